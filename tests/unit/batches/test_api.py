"""The Batch API through the official openai client, against the app with the fake encoder."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import openai
import pytest
from fastapi.testclient import TestClient

from rag_appliance.app import create_app
from tests.conftest import make_services, make_settings
from tests.fakes import FakeEncoder

KEY_A = "sk-batch-a-0123456789abcdef"
KEY_B = "sk-batch-b-0123456789abcdef"


def jsonl(*objects: Any) -> bytes:
    return b"".join(
        (o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n" for o in objects
    )


def line(custom_id: str, text: Any, url: str = "/v1/embeddings") -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": {"input": text}}


@pytest.fixture
def app_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(
        server={
            "ui": False,
            "api_keys": [
                {"key": KEY_A, "name": "a", "role": "read-write", "collections": ["a-*"]},
                {"key": KEY_B, "name": "b", "role": "read-write", "collections": ["b-*"]},
            ],
        },
        batch={"max_file_bytes": 4096, "max_lines": 20, "chunk_lines": 3},
    ).model_copy(update={"data_dir": tmp_path})
    with TestClient(create_app(settings, make_services(settings, FakeEncoder()))) as client:
        yield client


def openai_client(http: TestClient, key: str = KEY_A) -> openai.OpenAI:
    # The test client is an httpx.Client: the openai client drives the app in-process.
    return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=cast(Any, http))


def wait_done(client: openai.OpenAI, batch_id: str) -> Any:
    deadline = time.monotonic() + 20
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "cancelled"):
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.02)


def test_files_and_batches_round_trip_through_the_openai_client(app_client: TestClient) -> None:
    client = openai_client(app_client)
    texts = [f"text number {i}" for i in range(7)]
    data = jsonl(
        *(line(f"req-{i}", t) for i, t in enumerate(texts[:4])),
        b"{not json",
        line("req-0", "duplicate id"),
        line("req-url", "x", url="/v1/chat/completions"),
        {"custom_id": "no-body", "method": "POST", "url": "/v1/embeddings"},
        line("req-empty", ""),  # valid line, refused by the endpoint at run time
        *(line(f"req-{i}", t) for i, t in enumerate(texts[4:], start=4)),
    )
    uploaded = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
    assert uploaded.object == "file" and uploaded.purpose == "batch"
    assert uploaded.bytes == len(data) and uploaded.id.startswith("file-")
    assert client.files.retrieve(uploaded.id).filename == "in.jsonl"
    assert client.files.content(uploaded.id).read() == data

    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/embeddings",
        completion_window="24h",
        metadata={"run": "unit"},
    )
    assert batch.status == "validating" and batch.metadata == {"run": "unit"}
    done = wait_done(client, batch.id)
    assert done.status == "completed"
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (12, 7)
    assert done.request_counts.failed == 5
    assert done.errors is not None and done.errors.data is not None
    assert [(e.line, e.code) for e in done.errors.data] == [
        (5, "invalid_json_line"),
        (6, "duplicate_custom_id"),
        (7, "mismatched_endpoint"),
        (8, "missing_required_parameter"),
    ]
    assert done.output_file_id and done.error_file_id

    out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    assert [o["custom_id"] for o in out] == [f"req-{i}" for i in range(7)]
    direct = client.embeddings.create(input=texts, model="fake-model")
    for o, d in zip(out, direct.data, strict=True):
        assert o["id"].startswith("batch_req_") and o["error"] is None
        assert o["response"]["status_code"] == 200
        got = o["response"]["body"]["data"][0]["embedding"]
        np.testing.assert_allclose(got, d.embedding, rtol=1e-6)

    errors = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert [(e["custom_id"], e["error"] and e["error"]["line"]) for e in errors] == [
        (None, 5),
        ("req-0", 6),
        ("req-url", 7),
        ("no-body", 8),
        ("req-empty", None),
    ]
    refused = errors[-1]["response"]
    assert refused["status_code"] == 400 and refused["body"]["error"]["param"] == "input[0]"

    listed = client.batches.list()
    assert [b.id for b in listed.data] == [batch.id]
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)  # a completed batch cannot be cancelled
    assert client.files.delete(uploaded.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)


def test_another_key_sees_none_of_it(app_client: TestClient) -> None:
    a, b = openai_client(app_client), openai_client(app_client, KEY_B)
    uploaded = a.files.create(file=("in.jsonl", jsonl(line("x", "hello"))), purpose="batch")
    batch = a.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    for call in (
        lambda: b.files.retrieve(uploaded.id),
        lambda: b.files.content(uploaded.id),
        lambda: b.batches.retrieve(batch.id),
        lambda: b.batches.cancel(batch.id),
        lambda: b.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
        ),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert b.batches.list().data == []
    assert wait_done(a, batch.id).status == "completed"


@pytest.mark.parametrize(
    ("content", "purpose", "status", "param"),
    [
        (b"x" * 5000, "batch", 413, "file"),
        (jsonl(*(line(str(i), "t") for i in range(21))), "batch", 400, "file"),
        (b"{}\n", "fine-tune", 400, "purpose"),
    ],
)
def test_bad_uploads_get_openai_errors(
    app_client: TestClient, content: bytes, purpose: str, status: int, param: str
) -> None:
    response = app_client.post(
        "/v1/files",
        files={"file": ("in.jsonl", content)},
        data={"purpose": purpose},
        headers={"Authorization": f"Bearer {KEY_A}"},
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_bad_batch_requests_get_openai_errors(app_client: TestClient) -> None:
    client = openai_client(app_client)
    with pytest.raises(openai.NotFoundError) as missing:
        client.batches.create(
            input_file_id="file-000000000000000000000000",
            endpoint="/v1/embeddings",
            completion_window="24h",
        )
    assert missing.value.param == "input_file_id"
    uploaded = client.files.create(file=("in.jsonl", jsonl(line("x", "t"))), purpose="batch")
    with pytest.raises(openai.BadRequestError) as endpoint:
        client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert endpoint.value.param == "endpoint"
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_../../etc")


def test_a_file_of_only_bad_lines_fails_the_batch(app_client: TestClient) -> None:
    client = openai_client(app_client)
    uploaded = client.files.create(file=("in.jsonl", b"nope\n[1]\n"), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    done = wait_done(client, batch.id)
    assert done.status == "failed" and done.failed_at is not None
    assert done.errors is not None and done.errors.data is not None
    assert [e.line for e in done.errors.data] == [1, 2]
    assert done.output_file_id is None


def test_cancel_keeps_what_was_done_and_frees_the_input(app_client: TestClient) -> None:
    client = openai_client(app_client)
    services = app_client.app.state.services  # type: ignore[attr-defined]
    uploaded = client.files.create(
        file=("in.jsonl", jsonl(*(line(str(i), f"t{i}") for i in range(20)))), purpose="batch"
    )
    runner = services.batch_runner
    # Held before it starts: the batch stays active while the test acts on it.
    app_client.portal.call(runner.stop)  # type: ignore[union-attr]
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    with pytest.raises(openai.ConflictError):
        client.files.delete(uploaded.id)  # an unfinished batch reads it
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    app_client.portal.call(runner.start)  # type: ignore[union-attr]
    done = wait_done(client, batch.id)
    assert done.status == "cancelled" and done.cancelled_at is not None
    assert done.output_file_id is not None
    assert client.batches.cancel(batch.id).status == "cancelled"  # repeating is harmless
    assert client.files.delete(uploaded.id).deleted


def test_index_batches_embed_and_index_as_the_creating_key(tmp_path: Path, tokenizer: Any) -> None:
    from rag_appliance.store.qdrant_edge import QdrantEdgeStore

    settings = make_settings(
        server={
            "ui": False,
            "api_keys": [
                {"key": KEY_A, "name": "a", "role": "read-write", "collections": ["a-*"]},
            ],
        },
    ).model_copy(update={"data_dir": tmp_path})
    store = QdrantEdgeStore(tmp_path / "db")
    services = make_services(settings, FakeEncoder(), store, tokenizer=tokenizer)
    with TestClient(create_app(settings, services)) as http:
        client = openai_client(http)
        data = jsonl(
            {
                "custom_id": "docs",
                "method": "POST",
                "url": "/v1/index",
                "body": {"collection": "a-kb", "texts": ["alpha text", "beta text"]},
            },
            {
                "custom_id": "out-of-scope",
                "method": "POST",
                "url": "/v1/index",
                "body": {"collection": "b-kb", "texts": ["gamma"]},
            },
        )
        uploaded = client.files.create(file=("index.jsonl", data), purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/index",  # type: ignore[arg-type]
            completion_window="24h",
        )
        done = wait_done(client, batch.id)
        assert done.status == "completed"
        assert done.output_file_id and done.error_file_id
        out = json.loads(client.files.content(done.output_file_id).text)
        assert out["custom_id"] == "docs" and out["response"]["body"]["indexed"] == 2
        refused = json.loads(client.files.content(done.error_file_id).text)
        assert refused["custom_id"] == "out-of-scope"
        assert refused["response"]["status_code"] == 403
        listed = http.get("/v1/collections/a-kb", headers={"Authorization": f"Bearer {KEY_A}"})
        assert listed.json()["documents"] == 2


def test_disabled_batch_api_answers_503(tmp_path: Path) -> None:
    settings = make_settings(server={"ui": False}, batch={"enabled": False}).model_copy(
        update={"data_dir": tmp_path}
    )
    with TestClient(create_app(settings, make_services(settings, FakeEncoder()))) as http:
        response = http.get("/v1/batches")
        assert response.status_code == 503
        assert "batch.enabled" in response.json()["error"]["message"]
    assert not (tmp_path / "batches").exists()
