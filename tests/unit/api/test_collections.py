"""/v1/collections over HTTP with the fake model and a real embedded store: the collection JSON
and upgrading a dense-only collection in place (POST /v1/collections/{name}/sparse)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rag_appliance.app import create_app
from rag_appliance.collections.service import served_provenance
from rag_appliance.store.base import Provenance
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.conftest import make_services, make_settings
from tests.fakes import FAKE_PROFILE, FakeEncoder

DOCS = [
    {"id": "goats", "text": "Goats graze on the windy island all summer."},
    {"id": "llamas", "text": "Llamas hum softly when they are nervous."},
    {"id": "bees", "text": "Bees dance to tell the hive where the flowers are."},
]


@pytest.fixture
def store(tmp_path: Path) -> QdrantEdgeStore:
    store = QdrantEdgeStore(tmp_path / "db")
    # Collections made before BM25 existed: dense only.
    store.create_collection("kb", served_provenance(FAKE_PROFILE), bm25=None)
    store.create_collection("other", Provenance("other-model", 8), bm25=None)
    return store


@pytest.fixture
def client(store: QdrantEdgeStore, tokenizer: Any) -> Iterator[TestClient]:
    settings = make_settings(generation={"enabled": False})
    services = make_services(settings, FakeEncoder(), store, tokenizer=tokenizer)
    with TestClient(create_app(settings, services)) as c:
        yield c


def sparse_search(client: TestClient, query: str) -> Any:
    body = {"collection": "kb", "query": query, "mode": "sparse", "top_k": 3}
    return client.post("/v1/search", json=body)


def test_a_dense_only_collection_is_upgraded_in_place(client: TestClient) -> None:
    r = client.post("/v1/index", json={"collection": "kb", "documents": DOCS})
    assert r.status_code == 200, r.text
    before = client.get("/v1/collections/kb").json()
    assert (before["sparse"], before["bm25"], before["documents"]) == (False, None, 3)
    assert sparse_search(client, "llamas").status_code == 400
    default = {"collection": "kb", "query": "llamas"}
    assert client.post("/v1/search", json=default).json()["mode"] == "dense"

    r = client.post("/v1/collections/kb/sparse")
    assert r.status_code == 200, r.text
    after = r.json()
    assert after["sparse"] is True
    assert after["bm25"] == {
        "language": "english",
        "stemming": True,
        "stopwords": True,
        "k": 1.2,
        "b": 0.75,
        "avg_len": 256.0,
    }
    same = ("id", "object", "documents", "points", "created_at", "provenance")
    assert {k: after[k] for k in same} == {k: before[k] for k in same}
    r = sparse_search(client, "humming llama")  # stemmed: "hum", "llama"
    assert r.status_code == 200, r.text
    assert [h["doc_id"] for h in r.json()["data"]] == ["llamas"]
    # The default mode (hybrid) now applies to it: the service's cached answer was dropped.
    assert client.post("/v1/search", json=default).json()["mode"] == "hybrid"
    # Idempotent, and the listing says so too.
    again = client.post("/v1/collections/kb/sparse")
    assert again.status_code == 200 and again.json() == after
    listed = {c["id"]: c["sparse"] for c in client.get("/v1/collections").json()["data"]}
    assert listed == {"kb": True, "other": False}
    # Documents indexed afterwards get BM25 vectors as in any new collection.
    new = {"id": "owls", "text": "Owls turn their heads almost all the way round."}
    assert client.post("/v1/index", json={"collection": "kb", "documents": [new]}).is_success
    assert [h["doc_id"] for h in sparse_search(client, "owl heads").json()["data"]] == ["owls"]


def test_upgrade_errors(client: TestClient, store: QdrantEdgeStore) -> None:
    r = client.post("/v1/collections/nope/sparse")
    assert r.status_code == 404 and r.json()["error"]["param"] == "collection"
    # Another model's collection: the same 409 as for indexing into it; nothing changes.
    r = client.post("/v1/collections/other/sparse")
    assert r.status_code == 409 and "other-model" in r.json()["error"]["message"]
    assert store.get_collection("other").bm25 is None


def test_one_document_with_all_its_chunks_in_order(client: TestClient) -> None:
    long_text = " ".join(f"Sentence {n} about the tide mill and its wheel." for n in range(120))
    docs = [{"id": "mill/notes.txt", "text": long_text, "metadata": {"title": "Tide mill"}}]
    chunking = {"max_tokens": 64, "overlap_tokens": 0}
    body = {"collection": "kb", "documents": docs, "chunking": chunking}
    r = client.post("/v1/index", json=body)
    assert r.status_code == 200, r.text
    r = client.get("/v1/collections/kb/documents/mill/notes.txt")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["object"] == "document" and doc["id"] == "mill/notes.txt"
    assert doc["metadata"]["title"] == "Tide mill"
    assert doc["chunks"] == len(doc["data"]) > 3
    assert [c["index"] for c in doc["data"]] == list(range(doc["chunks"]))
    # in order and complete: without overlap the chunks put together give the text back
    joined = " ".join(c["text"].strip() for c in doc["data"])
    assert joined.split() == long_text.split()


def test_a_missing_document_is_a_404(client: TestClient) -> None:
    r = client.get("/v1/collections/kb/documents/nope")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "document_not_found"
    assert client.get("/v1/collections/missing/documents/x").status_code == 404
