"""SIGKILL `serve` in the middle of a large index call, restart it on the same data_dir: counts
agree, no uncommitted chunk is left, search sees whole documents only, and re-sending converges."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.servers import serve

pytestmark = pytest.mark.e2e

WORDS = ("goat", "island", "harbour", "llama", "stone", "wind", "salt", "meadow", "ferry")


def _doc(i: int, words: int) -> dict[str, Any]:
    text = " ".join(f"{WORDS[(i * 7 + n) % len(WORDS)]}{n % 13}" for n in range(words))
    return {"id": f"doc-{i}", "text": f"Document {i}. {text}"}


def _serve(data_dir: Path, log: Path) -> contextlib.AbstractContextManager[tuple[Any, str]]:
    # Small chunks and batches: many upserts, so a kill lands between two of them.
    return serve(
        data_dir,
        log,
        RAG_INGEST__CHUNK_MAX_TOKENS="48",
        RAG_INGEST__CHUNK_OVERLAP_TOKENS="8",
        RAG_INGEST__EMBED_BATCH="32",
    )


def _consistent(client: httpx.Client) -> dict[str, int]:
    """Check the listing against the counts and search; the listed documents' chunk counts."""
    info = client.get("/v1/collections/kb").json()
    docs = client.get("/v1/collections/kb/documents", params={"limit": 1000}).json()["data"]
    listed = {d["id"]: d["chunks"] for d in docs}
    assert info["pending_points"] == 0, info  # swept at start: no uncommitted chunk left
    assert info["documents"] == len(listed), info
    assert info["points"] == sum(listed.values()), info
    for query in ("goat island harbour", "llama meadow ferry", "salt wind stone"):
        r = client.post("/v1/search", json={"collection": "kb", "query": query, "top_k": 20})
        assert r.status_code == 200, r.text
        assert {h["doc_id"] for h in r.json()["data"]} <= set(listed), query
    return listed


def test_sigkill_mid_index_then_restart_is_consistent(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    small = [_doc(i, 60) for i in range(3)]
    big = [_doc(i, 200) for i in range(3, 19)]  # ~16 x 13 chunks: seconds to embed
    with _serve(data_dir, log) as (proc, base), httpx.Client(base_url=base, timeout=120) as api:
        r = api.post("/v1/index", json={"collection": "kb", "documents": small})
        assert r.status_code == 200, r.text

        def send_big() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the server dies under it
                httpx.post(
                    f"{base}/v1/index",
                    json={"collection": "kb", "documents": big},
                    timeout=120,
                )

        sender = threading.Thread(target=send_big, daemon=True)
        sender.start()
        deadline = time.monotonic() + 60
        while api.get("/v1/collections/kb").json()["pending_points"] < 64:
            assert sender.is_alive() and time.monotonic() < deadline, "no kill point reached"
            time.sleep(0.05)
        before = api.get("/v1/collections/kb").json()
        # Mid-way: the big call's chunks are in the store but none of them counts yet.
        assert before["documents"] == 3 and before["pending_points"] > 0, before
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        sender.join(30)

    with _serve(data_dir, log) as (_, base), httpx.Client(base_url=base, timeout=300) as api:
        listed = _consistent(api)
        assert set(listed) == {d["id"] for d in small}  # committed before the kill: kept
        assert "chunks of an unfinished index" in log.read_text()
        r = api.post("/v1/index", json={"collection": "kb", "documents": small + big})
        assert r.status_code == 200, r.text
        statuses = [d["status"] for d in r.json()["documents"]]
        assert statuses == ["unchanged"] * 3 + ["indexed"] * len(big), statuses
        listed = _consistent(api)
        assert set(listed) == {d["id"] for d in small + big}
