"""One HTTP scenario, unchanged, against every store backend (real embedder, real engines).

Index, upload, search in every mode, filters, grouping, chat with `rag`, delete and re-index,
over a real uvicorn server in front of embedded Qdrant, qdrant-client (`:memory:`), an
embedded PostgreSQL with pgvector and Milvus Lite. The generator is the fake one: what is
tested here is that every store serves the same API the same way, not the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from qdrant_client import QdrantClient

from rag_appliance.embedding.encoder import Encoder
from rag_appliance.store.base import VectorStore
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from rag_appliance.store.qdrant_server import QdrantServerStore
from rag_appliance.store.registry import BACKENDS
from tests.conftest import live_server, make_services, make_settings
from tests.fakes import FakeGenerator
from tests.unit.store.milvus_fixture import milvus_store
from tests.unit.store.pg_fixture import pg_store

STORES: dict[str, Callable[[Path], VectorStore]] = {
    "qdrant_edge": lambda tmp: QdrantEdgeStore(tmp / "edge"),
    "qdrant_server": lambda tmp: QdrantServerStore(QdrantClient(":memory:")),
    "pgvector": pg_store,
    "milvus": milvus_store,
}
DOCS = [
    {
        "id": "mill",
        "text": "The Harrow tide mill grinds oats with a wheel turned by the ebbing sea.",
        "metadata": {"title": "Tide mill", "team": "a", "year": 2019, "tags": ["water", "food"]},
    },
    {
        "id": "ferry",
        "text": "The Pyrrhic ferry is driven by a steam engine built in 1936 in Kellock.",
        "metadata": {"title": "Steam ferry", "team": "b", "year": 2022, "tags": ["sea"]},
    },
    {
        "id": "moth",
        "text": "The Pelinor moth has pale violet wings and flies only after sunset.",
        "metadata": {"title": "Violet moth", "team": "a", "year": 2024, "tags": ["insects"]},
    },
]


def test_every_backend_is_in_the_scenario() -> None:
    assert set(STORES) == set(BACKENDS)


@pytest.fixture(params=sorted(STORES))
def api(request: pytest.FixtureRequest, encoder: Encoder, tmp_path: Path) -> Iterator[str]:
    settings = make_settings(rag={"default_collection": "kb"})
    store = STORES[request.param](tmp_path)
    services = make_services(settings, encoder, store, FakeGenerator(max_model_len=2048))
    try:
        with live_server(settings, encoder, services=services) as url:
            yield url
    finally:
        store.close()


def search(url: str, query: str, **body: Any) -> list[dict[str, Any]]:
    r = httpx.post(
        f"{url}/v1/search", json={"collection": "kb", "query": query, **body}, timeout=60
    )
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def ids(hits: list[dict[str, Any]]) -> list[str]:
    return [h["doc_id"] for h in hits]


def test_the_same_scenario_on_every_store(api: str) -> None:
    url = api
    r = httpx.post(f"{url}/v1/index", json={"collection": "kb", "documents": DOCS}, timeout=120)
    assert r.status_code == 200, r.text
    upload = ("notes.txt", b"The Zephyra bridge has a main span of 640 metres.", "text/plain")
    r = httpx.post(
        f"{url}/v1/index/upload",
        data={"collection": "kb", "metadata": '{"team": "b", "year": 2023}'},
        files=[("files", upload)],
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert r.json()["files"][0]["status"] == "indexed", r.text
    info = httpx.get(f"{url}/v1/collections/kb").json()
    assert info["documents"] == 4 and info["sparse"] is True

    # every mode finds what it should; scores are per mode
    for mode in ("dense", "sparse", "hybrid"):
        hits = search(url, "steam engine ferry", mode=mode, top_k=2)
        assert ids(hits)[0] == "ferry", (mode, hits)
    assert ids(search(url, "bridge span metres", mode="sparse", top_k=1)) == ["notes.txt"]

    # filters: equality, a list value, a range, and both in every mode
    assert set(ids(search(url, "anything", filter={"team": "a"}, top_k=10))) == {"mill", "moth"}
    assert ids(search(url, "wings", filter={"tags": "insects"}, top_k=10)) == ["moth"]
    recent = search(url, "anything", filter={"year": {"gte": 2022}}, top_k=10)
    assert set(ids(recent)) == {"ferry", "moth", "notes.txt"}
    for mode in ("dense", "sparse", "hybrid"):
        hits = search(url, "ferry moth", mode=mode, filter={"team": "a", "year": {"lt": 2020}})
        assert set(ids(hits)) <= {"mill"}, (mode, hits)
    grouped = search(url, "the", group_by_document=True, top_k=3, mode="dense")
    assert len(grouped) == 3 and len(set(ids(grouped))) == 3

    # chat over the collection (model alias `rag`): the sources are the store's
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
    reply = client.chat.completions.create(
        model="rag", messages=[{"role": "user", "content": "What drives the Pyrrhic ferry?"}]
    )
    sources = (reply.model_extra or {})["sources"]
    assert sources[0]["doc_id"] == "ferry"

    # delete, then re-index with new text: no old chunk survives anywhere
    assert httpx.delete(f"{url}/v1/collections/kb/documents/moth").status_code == 200
    assert "moth" not in ids(search(url, "violet wings sunset", top_k=10))
    changed = [{**DOCS[0], "text": "The Harrow tide mill now grinds barley for the brewery."}]
    r = httpx.post(f"{url}/v1/index", json={"collection": "kb", "documents": changed}, timeout=60)
    assert r.status_code == 200, r.text
    doc = httpx.get(f"{url}/v1/collections/kb/documents/mill").json()
    assert "barley" in " ".join(c["text"] for c in doc["data"])
    assert "oats" not in " ".join(c["text"] for c in doc["data"])
    assert ids(search(url, "barley brewery", mode="sparse", top_k=1)) == ["mill"]
    assert httpx.get(f"{url}/v1/collections/kb").json()["documents"] == 3
