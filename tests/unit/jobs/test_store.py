"""The jobs journal: spooled inputs, atomic state, the done log replayed on load."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from rag_appliance.jobs.store import Job, JobStore, SpoolLimit, now, valid_id


def _job(store: JobStore, kind: str = "documents") -> Job:
    return Job(id=store.new_id(), kind=kind, collection="kb", owner=None, total=0, created_at=now())  # type: ignore[arg-type]


def _documents(store: JobStore, count: int) -> Job:
    job = _job(store)
    spool = store.spool(job.id, 1 << 20)
    for i in range(count):
        spool.add_document({"text": f"text {i}", "id": f"d{i}", "metadata": {}, "source": None})
    store.commit(job, spool)
    return job


def test_commit_then_load_replays_the_done_log(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs")
    job = _documents(store, 5)
    assert job.total == 5 and valid_id(job.id)
    store.record(
        job,
        [
            {"i": 0, "id": "d0", "status": "indexed", "chunks": 2},
            {"i": 3, "id": "d3", "status": "error", "error": {"status": 400, "message": "x"}},
        ],
    )
    (loaded,) = store.load_all()
    assert loaded.id == job.id and loaded.total == 5 and loaded.status == "queued"
    assert loaded.done == {0, 3} and loaded.indexed == 1 and loaded.failed == 1
    assert loaded.chunks == 2 and loaded.failures[0]["id"] == "d3"
    assert [item.index for item in store.items(loaded)] == [1, 2, 4]
    assert store.items(loaded).__next__().data["text"] == "text 1"


def test_a_torn_last_line_is_redone(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs")
    job = _documents(store, 3)
    store.record(job, [{"i": 0, "id": "d0", "status": "indexed", "chunks": 1}])
    with (tmp_path / "jobs" / job.id / "done.jsonl").open("a") as out:
        out.write('{"i": 1, "id": "d1", "sta')  # killed mid-append
    (loaded,) = store.load_all()
    assert loaded.done == {0}
    assert [item.index for item in store.items(loaded)] == [1, 2]


def test_an_unfinished_spool_is_deleted_on_load(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs")
    kept = _documents(store, 1)
    half = _job(store)
    spool = store.spool(half.id, 1 << 20)
    spool.add_document({"text": "t"})
    spool.close()  # never committed: no state.json
    assert [j.id for j in store.load_all()] == [kept.id]
    assert not (tmp_path / "jobs" / half.id).exists()


def test_files_are_spooled_within_the_limit(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs")
    job = _job(store, "files")
    spool = store.spool(job.id, 10)
    spool.add_file("a.txt", "text/plain", io.BytesIO(b"12345"))
    with pytest.raises(SpoolLimit):
        spool.add_file("b.txt", None, io.BytesIO(b"123456"))
    spool.close()
    store.discard(job.id)
    assert not (tmp_path / "jobs" / job.id).exists()

    job = _job(store, "files")
    spool = store.spool(job.id, 100)
    spool.add_file("a.txt", "text/plain", io.BytesIO(b"hello"))
    store.commit(job, spool)
    (item,) = store.items(job)
    assert store.read_file(job, item) == b"hello" and store.file_size(job, item) == 5
    store.drop_inputs(job)
    assert list(store.items(job)) == []


def test_prune_keeps_unfinished_and_the_newest_finished(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs")
    jobs = [_documents(store, 1) for _ in range(4)]
    for job in jobs[:3]:
        job.status = "completed"
        store.save(job)
    left = store.prune(store.load_all(), keep=1)
    assert {j.id for j in left} == {jobs[2].id, jobs[3].id}
    assert {j.id for j in store.load_all()} == {jobs[2].id, jobs[3].id}
