"""Retriever on the fake encoder and a real store: filters, the commit flag, one param name."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rag_appliance.collections.service import doc_filter
from rag_appliance.errors import CollectionNotFound, Conflict, InvalidRequest
from rag_appliance.ingest.pipeline import Document
from rag_appliance.services import Services
from rag_appliance.store.base import Provenance
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.conftest import make_services, make_settings
from tests.fakes import FakeEncoder

DOCS = [
    Document("Goats graze on the island.", id="goats", metadata={"lang": "en", "year": 2021}),
    Document(
        "Les chèvres broutent sur l'île.", id="chevres", metadata={"lang": "fr", "year": 2019}
    ),
    Document(
        "Llamas hum when they are nervous.", id="llamas", metadata={"lang": "en", "year": 2024}
    ),
]


@pytest.fixture
async def services(tokenizer: Any, tmp_path: Path) -> AsyncIterator[Services]:
    settings = make_settings(generation={"enabled": False})
    store = QdrantEdgeStore(tmp_path / "db")
    services = make_services(settings, FakeEncoder(), store, tokenizer=tokenizer)
    await services.start()
    await services.require_pipeline().index("kb", DOCS)
    yield services
    await services.stop()


async def ids(services: Services, **kwargs: Any) -> set[str]:
    hits = await services.require_retriever().search("kb", "animals", top_k=10, **kwargs)
    return {h.doc_id for h in hits}


async def test_filters_select_documents(services: Services) -> None:
    assert await ids(services) == {"goats", "chevres", "llamas"}
    assert await ids(services, filter={"lang": "en"}) == {"goats", "llamas"}
    assert await ids(services, filter={"year": {"gte": 2020, "lt": 2024}}) == {"goats"}
    assert await ids(services, filter={"doc_id": ["chevres", "llamas"]}) == {"chevres", "llamas"}
    assert await ids(services, filter={"lang": "de"}) == set()


async def test_hits_carry_the_chunk_payload(services: Services) -> None:
    (hit,) = await services.require_retriever().search(
        "kb", "goats", top_k=1, filter={"doc_id": "goats"}
    )
    assert (hit.doc_id, hit.chunk_index, hit.text) == ("goats", 0, DOCS[0].text)
    assert hit.metadata == {"lang": "en", "year": 2021} and hit.source is None


async def test_uncommitted_chunks_are_not_found(services: Services) -> None:
    store = services.store
    assert store is not None
    store.set_payload("kb", doc_filter("llamas"), {"committed": False})
    assert await ids(services) == {"goats", "chevres"}


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"filter": {"lang": {"near": 1}}}, "filter"),
        ({"filter": {"a..b": 1}}, "filter"),
        ({"filter": {"x": float("nan")}}, "filter"),
        ({"top_k": 10_000}, "top_k"),
        ({"query": "  "}, "query"),
        ({"collection": "../x"}, "collection"),
    ],
)
async def test_errors_name_one_param_and_the_callers_prefix(
    services: Services, kwargs: dict[str, Any], param: str
) -> None:
    retriever = services.require_retriever()
    args: dict[str, Any] = {"collection": "kb", "query": "animals"} | kwargs
    for prefix in ("", "rag."):
        with pytest.raises(InvalidRequest) as caught:
            await retriever.search(**args, param_prefix=prefix)
        assert caught.value.param == prefix + param


async def test_missing_and_foreign_collections(services: Services) -> None:
    retriever = services.require_retriever()
    with pytest.raises(CollectionNotFound):
        await retriever.search("nope", "animals")
    store = services.store
    assert store is not None
    store.create_collection("legacy", Provenance(model="other-model", dimension=8))
    with pytest.raises(Conflict) as caught:
        await retriever.search("legacy", "animals", param_prefix="rag.")
    assert caught.value.param == "rag.collection"
    assert "other-model" in caught.value.message
