"""The Batch API against `rag-appliance serve`, driven by the official openai client; and a
SIGKILL in the middle of a batch, after which the restarted server finishes it exactly once."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest

from tests.e2e.servers import serve

pytestmark = pytest.mark.e2e


def request(custom_id: str, text: Any, url: str = "/v1/embeddings") -> bytes:
    body = {"model": "all-MiniLM-L6-v2", "input": text}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body}).encode()


def wait(client: openai.OpenAI, batch_id: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "cancelled", "expired"):
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.1)


def check_batch_calls(client: openai.OpenAI, tmp_path: Path) -> None:
    """files.create -> batches.create -> retrieve -> files.content, bad lines, list, cancel."""
    texts = [f"Batch input {i}: embeddings for the harbour ferry timetable." for i in range(50)]
    lines = [request(f"req-{i}", t) for i, t in enumerate(texts)]
    lines.insert(10, b'{"custom_id": "broken", "method": "POST", "url": "/v1/embe')
    lines.insert(20, request("chat", "hello", url="/v1/chat/completions"))
    lines.insert(30, request("req-3", "a duplicate custom_id"))
    path = tmp_path / "small.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with path.open("rb") as f:
        uploaded = client.files.create(file=f, purpose="batch")
    assert uploaded.filename == "small.jsonl" and uploaded.bytes == path.stat().st_size
    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/embeddings",
        completion_window="24h",
        metadata={"pipeline": "nightly"},
    )
    done = wait(client, batch.id)
    assert done.status == "completed" and done.metadata == {"pipeline": "nightly"}
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (53, 50)
    assert done.request_counts.failed == 3
    assert done.output_file_id is not None and done.error_file_id is not None
    content = client.files.content(done.output_file_id)
    out = {o["custom_id"]: o for o in map(json.loads, content.text.splitlines())}
    assert list(out) == [f"req-{i}" for i in range(50)]
    direct = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
    bodies = [out[f"req-{i}"]["response"]["body"] for i in range(50)]
    got = np.array([b["data"][0]["embedding"] for b in bodies])
    want = np.array([d.embedding for d in direct.data])
    # bfloat16 on CPU: batch shapes move the last digits, not the direction.
    assert float(np.min(np.sum(got * want, axis=1))) >= 0.999
    errors = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert [(e["custom_id"], e["error"]["code"], e["error"]["line"]) for e in errors] == [
        (None, "invalid_json_line", 11),
        ("chat", "mismatched_endpoint", 21),
        ("req-3", "duplicate_custom_id", 31),
    ]
    assert [b.id for b in client.batches.list(limit=5).data] == [batch.id]
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)
    # A second batch cancelled at once: it ends cancelled, with an output file.
    second = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    assert client.batches.cancel(second.id).status in ("cancelling", "cancelled")
    assert wait(client, second.id).status == "cancelled"
    assert client.files.delete(uploaded.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.content(uploaded.id)
    too_big = io.BytesIO(b"x" * (1048576 + 1))
    with pytest.raises(openai.APIStatusError) as info:
        client.files.create(file=("big.jsonl", too_big), purpose="batch")
    assert info.value.status_code == 413


def test_batch_calls_then_sigkill_mid_batch_and_restart(tmp_path: Path) -> None:
    """The openai client's batch calls work unmodified; after a SIGKILL in the middle of a
    batch, the restarted server finishes it with every output line exactly once."""
    n = 1200
    path = tmp_path / "requests.jsonl"
    path.write_bytes(
        b"\n".join(request(f"id-{i}", f"short input number {i}") for i in range(n)) + b"\n"
    )
    data, log = tmp_path / "data", tmp_path / "server.log"
    env = {"RAG_BATCH__CHUNK_LINES": "50", "RAG_BATCH__MAX_FILE_BYTES": "1048576"}
    with serve(data, log, **env) as (proc, base):
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused")
        check_batch_calls(client, tmp_path)
        with path.open("rb") as f:
            uploaded = client.files.create(file=f, purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
        )
        deadline = time.monotonic() + 120
        while True:
            counts = client.batches.retrieve(batch.id).request_counts
            assert counts is not None
            if counts.completed >= 150:
                break
            assert time.monotonic() < deadline, counts
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert counts.completed < n, "the batch finished before the kill: make it bigger"
    with serve(data, log, **env) as (_, base):
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused")
        done = wait(client, batch.id)
        assert done.status == "completed", done
        assert done.request_counts is not None
        assert (done.request_counts.completed, done.request_counts.failed) == (n, 0)
        assert done.output_file_id is not None
        text = client.files.content(done.output_file_id).text
    ids = [json.loads(x)["custom_id"] for x in text.splitlines()]
    assert ids == [f"id-{i}" for i in range(n)]  # each once, in input order
