"""The UI's Jobs tab: a large upload becomes a job of the signed-in key, the table shows its
progress only to keys that may read its collection, Cancel needs write access."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import gradio as gr
import pytest

from rag_appliance.auth import FULL_ACCESS, acting_as
from rag_appliance.jobs.store import Spool
from rag_appliance.jobs.submit import new_job, spooled
from rag_appliance.services import Services
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from rag_appliance.ui.jobs import LARGE_UPLOAD_FILES, JobsActions
from tests.conftest import make_services, make_settings
from tests.fakes import FakeEncoder
from tests.unit.auth.conftest import KEYS
from tests.unit.ui.conftest import Request

ALICE = cast(gr.Request, Request(username="alice"))  # read-write, team-a-*
READER = cast(gr.Request, Request(username="reader"))  # read-only, team-a-*


class FakeUpload:
    """The synchronous upload the handler falls back to; records what it was given."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def __call__(self, files: Any, collection: Any, progress: Any, request: Any) -> Any:
        self.calls.append(list(files))
        return [["small.txt", "indexed", 1, ""]], None


@pytest.fixture
async def services(tmp_path: Path, tokenizer: Any) -> AsyncIterator[Services]:
    settings = make_settings(server={"api_keys": KEYS}).model_copy(
        update={"data_dir": tmp_path / "data"}
    )
    store = QdrantEdgeStore(tmp_path / "db")
    services = make_services(settings, FakeEncoder(), store, tokenizer=tokenizer)
    await services.start()
    yield services
    await services.stop()


def _files(folder: Path, count: int) -> list[str]:
    folder.mkdir()
    paths = []
    for i in range(count):
        path = folder / f"note-{i}.txt"
        path.write_text(f"Note {i}: the goats graze on the windy island number {i}.")
        paths.append(str(path))
    return paths


async def test_a_large_upload_runs_as_a_job_shown_with_its_progress(
    services: Services, tmp_path: Path
) -> None:
    fallback = FakeUpload()
    jobs = JobsActions(lambda: services, fallback)
    small = _files(tmp_path / "small", 2)
    rows, _ = await jobs.upload(small, "team-a-docs", request=ALICE)
    assert fallback.calls == [small] and rows[0][1] == "indexed"  # indexed at once, as before

    paths = _files(tmp_path / "large", LARGE_UPLOAD_FILES)
    rows, cleared = await jobs.upload(paths, "team-a-docs", request=ALICE)
    assert len(fallback.calls) == 1 and cleared is None
    assert rows[0][1] == "queued" and "job_" in rows[0][3]
    runner = services.require_jobs()
    (job,) = runner.jobs.values()
    assert job.kind == "files" and job.total == LARGE_UPLOAD_FILES
    assert job.owner == {"name": "alice", "role": "read-write", "collections": ["team-a-*"]}
    for _ in range(500):
        if job.finished:
            break
        await asyncio.sleep(0.02)
    assert job.status == "completed" and job.indexed == LARGE_UPLOAD_FILES

    table, picker = await jobs.jobs_listing(READER)  # read access is enough to see it
    (row,) = table
    assert row[0] == job.id and row[2] == "completed"
    assert row[3] == f"{LARGE_UPLOAD_FILES}/{LARGE_UPLOAD_FILES}" and row[5] == job.chunks > 0
    assert picker["choices"] == []  # nothing left to cancel
    with pytest.warns(UserWarning, match="read-only"):
        said = await jobs.cancel_job(job.id, READER)
    assert "read-only" in said


async def test_other_teams_see_nothing_and_cannot_submit(
    services: Services, tmp_path: Path
) -> None:
    jobs = JobsActions(lambda: services, FakeUpload())
    paths = _files(tmp_path / "b", LARGE_UPLOAD_FILES)
    with pytest.warns(UserWarning, match="no access"):
        rows, kept = await jobs.upload(paths, "team-b", request=ALICE)
    assert rows == [] and kept == gr.skip()  # refused before reading: the files stay
    assert services.require_jobs().jobs == {}
    runner = services.require_jobs()
    with acting_as(FULL_ACCESS):  # the admin key's job (over the API) on team-b
        job = new_job(runner, "documents", "team-b", {}, None)

        def fill(spool: Spool) -> None:
            spool.add_document({"text": "The team-b vault phrase.", "id": "vault"})

        runner.submit(await spooled(runner, job, fill, 1 << 20))
    for request in (ALICE, READER):
        table, picker = await jobs.jobs_listing(request)
        assert table == [] and picker["choices"] == []
    with pytest.warns(UserWarning, match="no access"):
        said = await jobs.cancel_job(job.id, ALICE)
    assert "no access" in said and not job.cancel_requested
