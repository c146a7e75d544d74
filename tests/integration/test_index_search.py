"""Index -> search through real HTTP, the real model, and both Qdrant adapters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag_appliance.embedding.encoder import Encoder
from rag_appliance.store.base import VectorStore
from tests.conftest import live_server, make_settings

FACTS = {
    "volcano": "Mount Kelvara is a dormant volcano whose last eruption buried the valley of "
    "Osk in grey ash three hundred years ago.",
    "recipe": "To make the lemon tart, blind-bake the pastry shell, then fill it with a curd "
    "of eggs, sugar, butter and lemon juice.",
    "python": "Python's asyncio event loop runs coroutines cooperatively; a blocking call "
    "inside a coroutine stalls every other task.",
}


def make_store(kind: str, path: Path) -> VectorStore:
    if kind == "edge":
        from rag_appliance.store.qdrant_edge import QdrantEdgeStore

        return QdrantEdgeStore(path / "qdrant")
    from qdrant_client import QdrantClient

    from rag_appliance.store.qdrant_server import QdrantServerStore

    return QdrantServerStore(QdrantClient(":memory:"))


@pytest.fixture(params=["edge", "server"])
def api(request: pytest.FixtureRequest, encoder: Encoder, tmp_path: Path) -> Iterator[httpx.Client]:
    settings = make_settings(ingest={"chunk_max_tokens": 32, "chunk_overlap_tokens": 4})
    with (
        live_server(settings, encoder, make_store(request.param, tmp_path)) as url,
        httpx.Client(base_url=url, timeout=120) as client,
    ):
        yield client


def index(api: httpx.Client, docs: list[dict[str, Any]], collection: str = "kb") -> Any:
    r = api.post("/v1/index", json={"collection": collection, "documents": docs})
    assert r.status_code == 200, r.text
    return r.json()


def search(api: httpx.Client, query: str, **kw: Any) -> list[dict[str, Any]]:
    r = api.post("/v1/search", json={"collection": "kb", "query": query} | kw)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_index_then_search_finds_the_right_doc(api: httpx.Client) -> None:
    body = index(api, [{"id": k, "text": v, "metadata": {"topic": k}} for k, v in FACTS.items()])
    assert body["indexed"] == 3 and body["unchanged"] == 0
    hits = search(api, "Which mountain covered a valley in ash?")
    assert hits[0]["doc_id"] == "volcano"
    assert hits[0]["metadata"] == {"topic": "volcano"}
    assert "Kelvara" in hits[0]["text"] and hits[0]["score"] > hits[-1]["score"]
    hits = search(api, "how do I bake a tart", filter={"topic": ["python", "volcano"]})
    assert {h["doc_id"] for h in hits} <= {"python", "volcano"}
    # A cosine threshold (dense mode); hybrid scores are the fusion's, on another scale.
    assert search(api, "ash", mode="dense", score_threshold=0.99) == []
    assert search(api, "ash", mode="hybrid", fusion="dbsf", score_threshold=2.01) == []


def test_reindex_shorter_drops_stale_chunks(api: httpx.Client) -> None:
    long_text = " ".join(
        f"Paragraph {i} talks about glaciers number {i} melting." for i in range(30)
    )
    first = index(api, [{"id": "doc", "text": long_text}])
    many = first["chunks"]
    assert many > 3
    second = index(api, [{"id": "doc", "text": "Glaciers are melting. That is all."}])
    assert second["chunks"] == 1 and second["indexed"] == 1
    info = api.get("/v1/collections/kb").json()
    assert info["points"] == 1 and info["documents"] == 1
    hits = search(api, "Paragraph 17 glaciers number 17", top_k=10)
    assert all("Paragraph" not in h["text"] for h in hits)


def test_identical_resend_is_a_no_op(api: httpx.Client) -> None:
    docs = [{"id": "a", "text": FACTS["recipe"]}]
    index(api, docs)
    before = api.get("/v1/collections/kb/documents").json()["data"][0]["indexed_at"]
    again = index(api, docs)
    assert again["unchanged"] == 1 and again["indexed"] == 0
    after = api.get("/v1/collections/kb/documents").json()["data"][0]["indexed_at"]
    assert before == after
    # Without an id, the content hash is the id: re-sending identical text changes nothing.
    simple = api.post("/v1/index", json={"collection": "kb", "texts": [FACTS["python"]]}).json()
    assert simple["indexed"] == 1
    simple_again = api.post("/v1/index", json={"collection": "kb", "texts": [FACTS["python"]]})
    assert simple_again.json()["unchanged"] == 1
    assert api.get("/v1/collections/kb").json()["documents"] == 2


def test_delete_document_and_collection(api: httpx.Client) -> None:
    index(api, [{"id": k, "text": v} for k, v in FACTS.items()])
    r = api.delete("/v1/collections/kb/documents/volcano")
    assert r.status_code == 200 and r.json()["deleted"] is True
    assert all(h["doc_id"] != "volcano" for h in search(api, "volcano ash valley", top_k=10))
    assert api.delete("/v1/collections/kb/documents/volcano").status_code == 404
    docs = api.get("/v1/collections/kb/documents", params={"limit": 1}).json()
    assert len(docs["data"]) == 1 and docs["has_more"] is True
    rest = api.get("/v1/collections/kb/documents", params={"after": docs["next"]}).json()
    assert {d["id"] for d in docs["data"] + rest["data"]} == {"recipe", "python"}
    assert [c["id"] for c in api.get("/v1/collections").json()["data"]] == ["kb"]
    assert api.delete("/v1/collections/kb").status_code == 200
    assert api.get("/v1/collections/kb").status_code == 404
    error = api.post("/v1/search", json={"collection": "kb", "query": "x"}).json()["error"]
    assert error["code"] == "collection_not_found"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"collection": "kb", "query": "x", "filter": {"topic": {"near": 1}}}, 400, "filter"),
        ({"collection": "kb", "query": "x", "filter": {"topic": []}}, 400, "filter"),
        ({"collection": "kb", "query": "x", "filter": {"a..b": 1}}, 400, "filter"),
        ({"collection": "kb", "query": "x", "top_k": 1000}, 400, "top_k"),
        ({"collection": "kb", "query": "   "}, 400, "query"),
        ({"collection": "nope", "query": "x"}, 404, None),
    ],
)
def test_search_errors(
    api: httpx.Client, body: dict[str, Any], status: int, param: str | None
) -> None:
    index(api, [{"id": "a", "text": FACTS["recipe"]}])
    r = api.post("/v1/search", json=body)
    assert r.status_code == status, r.text
    if param:
        assert r.json()["error"]["param"] == param


def test_index_errors(api: httpx.Client) -> None:
    bad = [
        ({"collection": "kb"}, 400),
        ({"collection": "kb", "texts": ["a"], "documents": [{"text": "b"}]}, 400),
        ({"collection": "kb", "texts": ["a", "b"], "ids": ["x"]}, 400),
        ({"collection": "../etc", "texts": ["a"]}, 400),
        ({"collection": "kb", "documents": [{"text": ""}]}, 400),
        ({"collection": "kb", "texts": []}, 400),
    ]
    for body, status in bad:
        r = api.post("/v1/index", json=body)
        assert r.status_code == status, (body, r.text)
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
