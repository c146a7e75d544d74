"""Issue 12 repros over real HTTP (real model, embedded store): each a 400 naming its param,
refused before anything is written, and the collection still healthy afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag_appliance.embedding.encoder import Encoder
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.conftest import live_server, make_settings
from tests.fakes import FakeGenerator

JSON = {"content-type": "application/json"}
DEEP = '{"n": ' * 130 + "1" + "}" * 130
GOOD = '{"id": "good", "text": "Mount Kelvara is a dormant volcano."}'


@pytest.fixture(scope="module")
def api(encoder: Encoder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    store = QdrantEdgeStore(Path(tmp_path_factory.mktemp("hostile")) / "qdrant")
    settings = make_settings(generation={"enabled": True})
    with (
        live_server(settings, encoder, store, FakeGenerator()) as url,
        httpx.Client(base_url=url, timeout=120) as client,
    ):
        r = client.post("/v1/index", json={"collection": "kb", "texts": ["seed text"]})
        assert r.status_code == 200, r.text
        yield client


def refused(r: httpx.Response, param: str) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    return error


def doc_ids(api: httpx.Client) -> set[str]:
    r = api.post("/v1/search", json={"collection": "kb", "query": "volcano", "top_k": 50})
    assert r.status_code == 200, r.text
    return {h["doc_id"] for h in r.json()["data"]}


@pytest.mark.parametrize(
    ("path", "raw", "param"),
    [
        ("/v1/embeddings", '{"input": "a\\ud800b"}', "input"),
        ("/v1/embeddings", '{"input": ["ok", "a\\ud800b"]}', "input[1]"),
        ("/v1/embeddings", '{"input": "ok", "model": "\\ud800"}', "model"),
        ("/v1/index", '{"collection": "kb", "texts": ["ok", "\\ud800"]}', "texts[1]"),
        ("/v1/index", '{"collection": "kb", "texts": ["a"], "ids": ["\\ud800"]}', "ids[0]"),
        (
            "/v1/index",
            f'{{"collection": "kb", "documents": [{GOOD}, {{"id": "b", "text": "t", '
            '"metadata": {"k": "\\ud800"}}]}',
            "documents[1].metadata.k",
        ),
        (
            "/v1/index",
            f'{{"collection": "kb", "documents": [{GOOD}, {{"id": "b", "text": "t", '
            '"metadata": {"k": 18446744073709551616}}]}',
            "documents[1].metadata.k",
        ),
        (
            "/v1/index",
            f'{{"collection": "kb", "documents": [{GOOD}, {{"id": "b", "text": "t", '
            f'"metadata": {DEEP}}}]}}',
            "documents[1].metadata" + ".n" * 32,
        ),
        (
            "/v1/index",
            f'{{"collection": "kb", "documents": [{GOOD}, {{"id": "good", "text": "x"}}]}}',
            "documents[1].id",
        ),
        (
            "/v1/index",
            f'{{"collection": "kb", "documents": [{GOOD}, {{"text": "\\ud800"}}]}}',
            "documents",
        ),
        ("/v1/search", '{"collection": "kb", "query": "a\\ud800"}', "query"),
        ("/v1/search", '{"collection": "kb", "query": "q", "filter": {"a": "\\ud800"}}', "filter"),
        (
            "/v1/search",
            '{"collection": "kb", "query": "q", "filter": {"a": 18446744073709551616}}',
            "filter",
        ),
        (
            "/v1/search",
            '{"collection": "kb", "query": "q", "score_threshold": NaN}',
            "score_threshold",
        ),
        (
            "/v1/search",
            '{"collection": "kb", "query": "q", "score_threshold": Infinity}',
            "score_threshold",
        ),
        ("/v1/chat/completions", '{"messages": [{"role": "user"}]}', "messages[0].content"),
        (
            "/v1/chat/completions",
            '{"messages": [{"role": "user", "content": "\\ud800"}]}',
            "messages[0].content",
        ),
        (
            "/v1/chat/completions",
            '{"messages": [{"role": "user", "content": "q"}], '
            '"rag": {"collection": "kb", "filter": {"a": 18446744073709551616}}}',
            "rag.filter",
        ),
    ],
)
def test_each_repro_is_a_400_and_writes_nothing(
    api: httpx.Client, path: str, raw: str, param: str
) -> None:
    refused(api.post(path, content=raw.encode(), headers=JSON), param)
    assert "good" not in doc_ids(api)  # the valid document of a refused batch was not written


def multipart(*files: tuple[bytes, bytes], metadata: bytes | None = None) -> bytes:
    parts = [(b'name="collection"', b"kb")]
    if metadata is not None:
        parts.append((b'name="metadata"', metadata))
    parts += [
        (b'name="files"; filename="' + name + b'"\r\nContent-Type: text/plain', data)
        for name, data in files
    ]
    body = b"".join(
        b"--B\r\nContent-Disposition: form-data; " + head + b"\r\n\r\n" + data + b"\r\n"
        for head, data in parts
    )
    return body + b"--B--\r\n"


def upload(api: httpx.Client, body: bytes) -> httpx.Response:
    return api.post(
        "/v1/index/upload",
        content=body,
        headers={"content-type": "multipart/form-data; boundary=B"},
    )


def test_uploads(api: httpx.Client) -> None:
    r = upload(api, multipart((b"caf\xe9\xff.txt", b"a file with a latin-1 name")))
    assert r.status_code == 200, r.text
    assert r.json()["files"][0]["status"] == "indexed"
    error = refused(upload(api, multipart((b"a.txt", b"one"), (b"a.txt", b"two"))), "files[1]")
    assert "'a.txt'" in error["message"] and error["code"] == "duplicate_id"
    refused(upload(api, multipart((b"c.txt", b"x"), metadata=b'{"k": "\\ud800"}')), "metadata.k")
    refused(
        upload(api, multipart((b"c.txt", b"x"), metadata=DEEP.encode())), "metadata" + ".n" * 32
    )


def test_collection_still_accepts_valid_writes(api: httpx.Client) -> None:
    for raw in ('{"input": "\\ud800"}',):
        refused(api.post("/v1/embeddings", content=raw.encode(), headers=JSON), "input")
    deep = f'{{"collection": "kb", "documents": [{GOOD}, {{"text": "t", "metadata": {DEEP}}}]}}'
    refused(
        api.post("/v1/index", content=deep.encode(), headers=JSON),
        "documents[1].metadata" + ".n" * 32,
    )
    r = api.post(
        "/v1/index", content=f'{{"collection": "kb", "documents": [{GOOD}]}}'.encode(), headers=JSON
    )
    assert r.status_code == 200 and r.json()["indexed"] == 1, r.text
    assert "good" in doc_ids(api)
