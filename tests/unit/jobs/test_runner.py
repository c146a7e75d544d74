"""The jobs runner over a fake pipeline: batches, per-item failures, resume, cancel, the owner."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rag_appliance.auth.keys import ApiKeySpec, Principal
from rag_appliance.embedding.batcher import background_lane
from rag_appliance.errors import Conflict, InvalidRequest
from rag_appliance.ingest.chunking import ChunkingParams
from rag_appliance.ingest.pipeline import DocResult, Document
from rag_appliance.jobs.protocol import job_object
from rag_appliance.jobs.runner import JobRunner
from rag_appliance.jobs.settings import JobsSettings
from rag_appliance.jobs.store import Job, JobStore, now


class FakePipeline:
    """Records each index call; 'bad' documents refuse the call, `gate` holds calls back."""

    def __init__(self, gate: asyncio.Event | None = None, conflict: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.lanes: list[bool] = []  # whether each call ran in the embedder's background lane
        self.committed: list[str] = []
        self.gate = gate
        self.conflict = conflict

    def chunking(self, max_tokens: int | None = None, overlap: int | None = None) -> ChunkingParams:
        return ChunkingParams(max_tokens=max_tokens or 16, overlap_tokens=overlap or 0)

    async def index(
        self, collection: str, documents: Sequence[Document], params: Any = None
    ) -> list[DocResult]:
        ids = [d.id or "" for d in documents]
        self.calls.append(ids)
        self.lanes.append(background_lane.get())
        if self.conflict:
            raise Conflict("another model's collection")
        if any(d.text == "bad" for d in documents):
            raise InvalidRequest("document has no text", param="documents")
        if self.gate is not None:
            await self.gate.wait()
            self.gate.clear()
        self.committed += ids
        return [DocResult(i, 2, "indexed") for i in ids]


def _submit(runner: JobRunner, texts: list[str], owner: dict[str, Any] | None = None) -> Job:
    store = runner.store
    job = Job(
        id=store.new_id(),
        kind="documents",
        collection="kb",
        owner=owner,
        total=0,
        created_at=now(),
    )
    spool = store.spool(job.id, 1 << 20)
    for i, text in enumerate(texts):
        spool.add_document({"text": text, "id": f"d{i}", "metadata": {}, "source": None})
    store.commit(job, spool)
    runner.submit(job)
    return job


async def _wait(done: Callable[[], bool]) -> None:
    for _ in range(1000):  # 10 s at most
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def _until(job: Job, *statuses: str) -> None:
    await _wait(lambda: job.status in statuses)


def _runner(root: Path, pipeline: FakePipeline, keys: list[Any] | None = None) -> JobRunner:
    return JobRunner(JobStore(root), lambda: pipeline, JobsSettings(batch_items=3), keys or [])  # type: ignore[arg-type,return-value]


async def test_a_job_completes_and_a_bad_document_fails_alone(tmp_path: Path) -> None:
    pipeline = FakePipeline()
    runner = _runner(tmp_path, pipeline)
    await runner.start()
    try:
        texts = [f"text {i}" for i in range(8)]
        texts[4] = "bad"
        job = _submit(runner, texts)
        await _until(job, "completed")
        # Finished: its spooled inputs are deleted.
        await _wait(lambda: not (tmp_path / job.id / "items.jsonl").exists())
    finally:
        await runner.stop()
    body = job_object(job, runner.rates[job.id])
    assert body["documents"] == {
        "total": 8,
        "done": 7,
        "failed": 1,
        "indexed": 7,
        "unchanged": 0,
    }
    assert body["chunks"] == 14 and body["eta_s"] is None
    (failure,) = body["failures"]
    assert failure["index"] == 4 and failure["id"] == "d4"
    assert failure["error"]["status"] == 400 and "no text" in failure["error"]["message"]
    assert sorted(pipeline.committed) == sorted(f"d{i}" for i in range(8) if i != 4)
    assert body["rate"]["documents_per_s"] > 0
    # Every index call of the job ran in the embedder's background lane (after interactive work).
    assert pipeline.lanes and all(pipeline.lanes)


async def test_resume_after_a_crash_indexes_only_what_was_not_done(tmp_path: Path) -> None:
    gate = asyncio.Event()
    first = FakePipeline(gate)
    runner = _runner(tmp_path, first)
    await runner.start()
    job = _submit(runner, [f"text {i}" for i in range(10)])
    gate.set()  # the first batch goes through, the second one hangs
    await _wait(lambda: len(first.calls) >= 2)
    await runner.stop()  # the process goes away mid-batch
    assert first.committed == ["d0", "d1", "d2"] and job.status == "running"

    second = FakePipeline()
    resumed = _runner(tmp_path, second)
    await resumed.start()
    try:
        again = resumed.get(job.id)
        await _until(again, "completed")
    finally:
        await resumed.stop()
    assert second.committed == [f"d{i}" for i in range(3, 10)]  # never d0..d2 again
    assert again.indexed == 10 and again.chunks == 20 and again.total == 10


async def test_cancel_stops_after_the_current_batch(tmp_path: Path) -> None:
    gate = asyncio.Event()
    pipeline = FakePipeline(gate)
    runner = _runner(tmp_path, pipeline)
    await runner.start()
    try:
        job = _submit(runner, [f"text {i}" for i in range(9)])
        queued = _submit(runner, ["text"])
        await _wait(lambda: bool(pipeline.calls))
        await runner.cancel(job)
        assert job_object(job, None)["status"] == "cancelling"
        await runner.cancel(queued)  # not started: cancelled at once
        assert queued.status == "cancelled" and queued.finished_at is not None
        gate.set()  # the batch in flight completes whole
        await _until(job, "cancelled")
    finally:
        await runner.stop()
    assert pipeline.committed == ["d0", "d1", "d2"] and len(pipeline.calls) == 1
    assert job.indexed == 3 and job.total == 9
    (reloaded_job, reloaded_queued) = JobStore(tmp_path).load_all()
    assert reloaded_job.status == "cancelled" and reloaded_queued.status == "cancelled"


async def test_a_collection_error_fails_the_whole_job(tmp_path: Path) -> None:
    runner = _runner(tmp_path, FakePipeline(conflict=True))
    await runner.start()
    try:
        job = _submit(runner, ["a", "b", "c", "d"])
        await _until(job, "failed")
    finally:
        await runner.stop()
    assert job.error is not None and job.error["status"] == 409
    assert job.failed == 0 and len(job.done) == 0


async def test_a_job_runs_only_while_its_key_is_configured(tmp_path: Path) -> None:
    spec = ApiKeySpec(key="sk-team-a-0123456789", role="read-write", collections=["kb"])
    owner = {"name": None, "role": "read-write", "collections": ["kb"]}
    pipeline = FakePipeline()
    runner = _runner(tmp_path, pipeline, [spec])
    await runner.start()
    try:
        ok = _submit(runner, ["a"], owner)
        await _until(ok, "completed")
        other = {"name": None, "role": "read-write", "collections": ["gone"]}
        refused = _submit(runner, ["b"], other)
        await _until(refused, "failed")
    finally:
        await runner.stop()
    assert refused.error is not None and refused.error["status"] == 403
    assert pipeline.committed == ["d0"]
    assert Principal(None, "read-write", ("kb",)) in runner._keys.principals
