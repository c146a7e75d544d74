"""/v1/search modes over HTTP with the real model and the embedded store: dense, BM25, hybrid,
grouping by document, contextual chunks, and chat / UI / search agreeing on the same query."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag_appliance.embedding.encoder import Encoder
from rag_appliance.services import Services
from rag_appliance.settings import Bm25Settings
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.conftest import live_server, make_services, make_settings
from tests.fakes import FakeGenerator

DOCS: list[dict[str, Any]] = [
    {"id": "quokka", "text": "The quokka is a small marsupial found on Rottnest Island."},
    {"id": "kettle", "text": "Descale the kettle monthly with citric acid to keep it working."},
    {"id": "router", "text": "Reboot the wifi router if the connection keeps dropping."},
    {
        "id": "zx81",
        "text": "Serial number ZX81-4471 identifies the spare part.",
        "metadata": {"title": "Warranty claims", "team": "support"},
    },
]
# Long enough for many chunks, all about one topic: without grouping it fills the top k alone.
LONG: dict[str, Any] = {
    "id": "handbook",
    "text": " ".join(
        f"Section {i}: the router firmware update procedure, step {i}, for wifi routers."
        for i in range(60)
    ),
}


@pytest.fixture(scope="module")
def rig(
    encoder: Encoder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Services]]:
    settings = make_settings(
        ingest={"chunk_max_tokens": 32, "chunk_overlap_tokens": 4},
        rag={"default_collection": "kb"},
    )
    data = tmp_path_factory.mktemp("modes")
    services = make_services(
        settings, encoder, QdrantEdgeStore(data / "db"), FakeGenerator(max_model_len=4096)
    )
    with live_server(settings, encoder, services=services) as url:
        r = httpx.post(
            f"{url}/v1/index", json={"collection": "kb", "documents": [*DOCS, LONG]}, timeout=120
        )
        assert r.status_code == 200, r.text
        yield url, services


def search(url: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/search", json={"collection": "kb", **body}, timeout=60)


def test_default_is_hybrid_with_the_configured_fusion(rig: tuple[str, Services]) -> None:
    url, services = rig
    r = search(url, query="small marsupial on an island")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mode"] == "hybrid" and body["fusion"] == services.settings.search.fusion
    assert body["reranked"] is False and body["data"][0]["doc_id"] == "quokka"


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_every_mode_finds_a_plain_match(rig: tuple[str, Services], mode: str) -> None:
    url, _ = rig
    r = search(url, query="descale kettle citric acid", mode=mode, top_k=3)
    assert r.status_code == 200, r.text
    assert r.json()["mode"] == mode and r.json()["data"][0]["doc_id"] == "kettle"


def test_sparse_matches_exact_tokens_the_dense_model_blurs(rig: tuple[str, Services]) -> None:
    url, _ = rig
    hits = search(url, query="ZX81-4471", mode="sparse", top_k=2).json()["data"]
    assert hits[0]["doc_id"] == "zx81"
    assert all(h["doc_id"] == "zx81" for h in hits)  # only that document has the tokens


def test_filters_apply_to_both_arms(rig: tuple[str, Services]) -> None:
    url, _ = rig
    for mode in ("sparse", "hybrid"):
        # zx81 shares "part" with the query; the router documents match better but are filtered.
        r = search(url, query="router wifi part", mode=mode, filter={"team": "support"})
        assert r.status_code == 200, r.text
        assert {h["doc_id"] for h in r.json()["data"]} == {"zx81"}, mode


def test_group_by_document_returns_exactly_top_k_documents(rig: tuple[str, Services]) -> None:
    url, _ = rig
    for mode in ("dense", "sparse", "hybrid"):
        flat = search(url, query="wifi router firmware kettle", mode=mode, top_k=3).json()["data"]
        assert [h["doc_id"] for h in flat].count("handbook") >= 2, mode  # chunks crowd in
        grouped = search(
            url, query="wifi router firmware kettle", mode=mode, top_k=3, group_by_document=True
        ).json()["data"]
        ids = [h["doc_id"] for h in grouped]
        assert len(ids) == 3 and len(set(ids)) == 3, (mode, ids)
        assert "handbook" in ids and "router" in ids, (mode, ids)


def test_contextual_chunks_index_the_title_but_store_the_text(
    rig: tuple[str, Services],
) -> None:
    url, _ = rig
    hits = search(url, query="warranty claims", mode="sparse", top_k=1).json()["data"]
    # Only the title says "warranty": the chunk was indexed with it...
    assert hits and hits[0]["doc_id"] == "zx81"
    # ...while the stored chunk text is exactly the document's.
    assert hits[0]["text"] == DOCS[3]["text"]


def test_rerank_without_a_reranker_is_refused(rig: tuple[str, Services]) -> None:
    url, _ = rig
    r = search(url, query="kettle", rerank=True)
    assert r.status_code == 400 and r.json()["error"]["param"] == "rerank"
    assert search(url, query="kettle", mode="fuzzy").status_code == 400


def test_chat_and_search_retrieve_the_same_passages(rig: tuple[str, Services]) -> None:
    url, services = rig
    question = "How do I fix a wifi connection that keeps dropping?"
    k = services.settings.rag.top_k
    searched = [h["doc_id"] for h in search(url, query=question, top_k=k).json()["data"]]
    chat = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "rag", "messages": [{"role": "user", "content": question}]},
        timeout=60,
    ).json()
    assert [s["doc_id"] for s in chat["sources"]] == searched


async def test_ui_chat_retrieves_like_search(encoder: Encoder, tmp_path: Path) -> None:
    from rag_appliance.ui.actions import Actions

    settings = make_settings(generation={"record_prompts": 5})
    services = make_services(
        settings, encoder, QdrantEdgeStore(tmp_path / "db"), FakeGenerator(max_model_len=4096)
    )
    await services.start()
    try:
        pipeline = services.require_pipeline()
        from rag_appliance.ingest.pipeline import Document

        await pipeline.index(
            "kb", [Document(d["text"], id=d["id"], metadata=d.get("metadata", {})) for d in DOCS]
        )
        question = "serial number of the spare part for a warranty claim"
        k = 3
        searched = await services.require_retriever().search("kb", question, k)
        async for _ in Actions(lambda: services).chat(question, [], "kb", False, k, 0.0):
            pass
        assert services.chat is not None
        sources = services.chat.recorded[-1].sources
        assert sources is not None
        assert [h.doc_id for h in sources] == [h.doc_id for h in searched]
        assert sources[0].doc_id == "zx81"
    finally:
        await services.stop()


def test_dense_only_collections_default_to_dense(encoder: Encoder, tmp_path: Path) -> None:
    settings = make_settings(ingest={"bm25": Bm25Settings(enabled=False)})
    services = make_services(settings, encoder, QdrantEdgeStore(tmp_path / "db"))
    with live_server(settings, encoder, services=services) as url:
        r = httpx.post(f"{url}/v1/index", json={"collection": "old", "texts": ["a kettle"]})
        assert r.status_code == 200, r.text
        ok = httpx.post(f"{url}/v1/search", json={"collection": "old", "query": "kettle"})
        assert ok.status_code == 200 and ok.json()["mode"] == "dense"
        refused = httpx.post(
            f"{url}/v1/search", json={"collection": "old", "query": "kettle", "mode": "hybrid"}
        )
        assert refused.status_code == 400 and "old" in refused.json()["error"]["message"]
