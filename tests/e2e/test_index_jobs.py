"""SIGKILL `serve` in the middle of an indexing job, restart it on the same data_dir: the job
resumes on its own and completes, and the collection holds exactly the job's documents once."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.servers import serve

pytestmark = pytest.mark.e2e

WORDS = ("goat", "island", "harbour", "llama", "stone", "wind", "salt", "meadow", "ferry")
COUNT = 200


def _doc(i: int) -> dict[str, Any]:
    text = " ".join(f"{WORDS[(i * 5 + n) % len(WORDS)]}{n % 7}" for n in range(24))
    return {"id": f"doc-{i}", "text": f"Document {i}. {text}"}


def _serve(data_dir: Path, log: Path) -> contextlib.AbstractContextManager[tuple[Any, str]]:
    # Many batches: the kill lands between two of them.
    return serve(data_dir, log, RAG_JOBS__BATCH_ITEMS="40")


def test_sigkill_mid_job_then_restart_resumes_and_completes(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    docs = [_doc(i) for i in range(COUNT)]
    with _serve(data_dir, log) as (proc, base), httpx.Client(base_url=base, timeout=120) as api:
        r = api.post("/v1/index/jobs", json={"collection": "kb", "documents": docs})
        assert r.status_code == 200, r.text
        job_id = r.json()["id"]
        deadline = time.monotonic() + 60
        while True:
            job = api.get(f"/v1/index/jobs/{job_id}").json()
            if job["documents"]["done"] >= 40:
                break
            assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = job["documents"]["done"]
        assert job["status"] == "running" and killed_at < COUNT, job  # mid-job
        assert job["rate"]["documents_per_s"] > 0 and job["eta_s"] is not None, job

    with _serve(data_dir, log) as (_, base), httpx.Client(base_url=base, timeout=120) as api:
        deadline = time.monotonic() + 120
        while True:
            job = api.get(f"/v1/index/jobs/{job_id}").json()
            if job["status"] not in ("queued", "running"):
                break
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["status"] == "completed", job
        assert job["documents"]["done"] == COUNT and job["documents"]["failed"] == 0, job
        assert job["documents"]["indexed"] >= killed_at, job
        assert f"resuming {job_id}" in log.read_text()
        info = api.get("/v1/collections/kb").json()
        listed = api.get("/v1/collections/kb/documents", params={"limit": 1000}).json()["data"]
        assert sorted(d["id"] for d in listed) == sorted(d["id"] for d in docs)
        assert info["documents"] == COUNT and info["pending_points"] == 0, info
        assert info["points"] == sum(d["chunks"] for d in listed) == job["chunks"], info
        (only,) = api.get("/v1/index/jobs").json()["data"]
        assert only["id"] == job_id
