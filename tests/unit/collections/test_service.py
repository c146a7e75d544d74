"""CollectionService on real stores (embedded Qdrant, qdrant-client :memory:): provenance, 409s,
the commit flag, listing, paging, deleting, and the remembered checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from rag_appliance.collections.service import COMMITTED, CollectionService
from rag_appliance.errors import CollectionNotFound, Conflict, InvalidRequest
from rag_appliance.ingest.chunking import stable_chunk_id
from rag_appliance.store.base import Filter, Match, Point, Provenance, VectorStore
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from rag_appliance.store.qdrant_server import QdrantServerStore
from tests.fakes import FAKE_PROFILE

SERVED = Provenance(model="fake-model", dimension=8, document_prefix="d: ")
STORES: dict[str, Callable[[Path], VectorStore]] = {
    "qdrant_edge": lambda tmp: QdrantEdgeStore(tmp / "store"),
    "qdrant_server": lambda tmp: QdrantServerStore(QdrantClient(":memory:")),
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    s = STORES[request.param](tmp_path)
    yield s
    s.close()


@pytest.fixture
def service(store: VectorStore) -> CollectionService:
    return CollectionService(store, FAKE_PROFILE)


def chunk(doc_id: str, index: int, count: int, committed: bool = True) -> Point:
    vector = np.zeros(8, dtype=np.float32)
    vector[index % 8] = 1.0
    payload: dict[str, Any] = {
        "doc_id": doc_id,
        "chunk_index": index,
        "chunk_count": count,
        "text": f"{doc_id} part {index}",
        "metadata": {"lang": "en"},
        "source": f"{doc_id}.txt",
        "indexed_at": "2026-01-01T00:00:00+00:00",
        "committed": committed,
    }
    return Point(stable_chunk_id(doc_id, index), vector, payload)


async def test_ensure_creates_the_served_provenance_once(
    service: CollectionService, store: VectorStore
) -> None:
    assert service.provenance == SERVED
    await service.ensure("kb")
    await service.ensure("kb")
    assert store.get_collection("kb").provenance == SERVED
    assert [i.name for i in store.list_collections()] == ["kb"]


async def test_missing_collection_is_a_404(service: CollectionService) -> None:
    for call in (service.check, service.get, service.delete, service.count_documents):
        with pytest.raises(CollectionNotFound) as caught:
            await call("nope")
        assert caught.value.status == 404


async def test_bad_name_is_a_400_before_anything_is_made(
    service: CollectionService, store: VectorStore
) -> None:
    for call in (service.check, service.ensure):
        with pytest.raises(InvalidRequest) as caught:
            await call("../etc")
        assert caught.value.param == "collection"
    assert store.list_collections() == []


@pytest.mark.parametrize(
    "other",
    [
        Provenance(model="BAAI/bge-base-en-v1.5", dimension=768),
        Provenance(model="other-model", dimension=8, document_prefix="d: "),
        # Same model and size, another document prefix: the vectors still mean something else.
        Provenance(model="fake-model", dimension=8, document_prefix="passage: "),
    ],
)
async def test_any_other_provenance_is_the_same_409(
    service: CollectionService, store: VectorStore, other: Provenance
) -> None:
    store.create_collection("legacy", other)
    messages = set()
    calls = (service.check, service.ensure, lambda n: service.delete_document(n, "doc"))
    for call in calls:
        with pytest.raises(Conflict) as caught:
            await call("legacy")
        assert caught.value.status == 409 and caught.value.param == "collection"
        messages.add(caught.value.message)
    (message,) = messages
    assert f"'{other.model}'" in message and "'fake-model'" in message
    assert repr(other.document_prefix) in message and "'d: '" in message
    # Listing and reading are not refused: the collection is there, only not ours to use.
    info, documents = await service.get("legacy")
    assert info.provenance == other and documents == 0


async def test_a_passed_check_is_remembered_for_its_ttl(
    store: VectorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up: list[str] = []
    real = store.get_collection

    def counting(name: str) -> Any:
        looked_up.append(name)
        return real(name)

    monkeypatch.setattr(store, "get_collection", counting)
    remembering = CollectionService(store, FAKE_PROFILE, check_ttl_s=60)
    await remembering.ensure("kb")
    before = len(looked_up)
    for _ in range(3):
        await remembering.check("kb")
    assert len(looked_up) == before
    forgetful = CollectionService(store, FAKE_PROFILE, check_ttl_s=0)
    for _ in range(3):
        await forgetful.check("kb")
    assert len(looked_up) == before + 3
    # Deleting through the service forgets the check: the next one is a 404 again.
    await remembering.delete("kb")
    with pytest.raises(CollectionNotFound):
        await remembering.check("kb")


async def test_visible_adds_the_commit_flag(service: CollectionService, store: VectorStore) -> None:
    lang = Match("metadata.lang", ("en",))
    assert service.visible() == Filter(must=(COMMITTED,))
    assert service.visible([lang]) == Filter(must=(lang, COMMITTED))
    await service.ensure("kb")
    store.upsert("kb", [chunk("a", 0, 2), chunk("a", 1, 2), chunk("draft", 0, 1, False)])
    assert store.count("kb", service.visible([lang])) == 2
    assert store.count("kb") == 3


async def test_documents_lists_committed_documents_page_by_page(
    service: CollectionService, store: VectorStore
) -> None:
    await service.ensure("kb")
    points = [chunk(d, i, 2) for d in ("a", "b", "c") for i in range(2)]
    store.upsert("kb", [*points, chunk("half-written", 0, 3, committed=False)])
    assert await service.count_documents("kb") == 3
    info, documents = await service.get("kb")
    assert (info.name, info.points_count, documents) == ("kb", 6, 3)  # committed only
    assert [(i.name, n) for i, n in await service.all()] == [("kb", 3)]
    seen = []
    cursor: str | None = None
    for _ in range(5):
        page, cursor = await service.documents("kb", 2, cursor)
        assert len(page) <= 2
        seen += page
        if cursor is None:
            break
    assert sorted(d.id for d in seen) == ["a", "b", "c"]
    first = next(d for d in seen if d.id == "a")
    assert (first.chunks, first.source, first.metadata) == (2, "a.txt", {"lang": "en"})
    assert first.indexed_at == "2026-01-01T00:00:00+00:00"


async def test_delete_document_and_collection(
    service: CollectionService, store: VectorStore
) -> None:
    await service.ensure("kb")
    store.upsert("kb", [chunk("a", 0, 2), chunk("a", 1, 2), chunk("b", 0, 1)])
    assert await service.delete_document("kb", "a") == 2
    with pytest.raises(CollectionNotFound) as caught:
        await service.delete_document("kb", "a")
    assert caught.value.code == "document_not_found" and caught.value.param == "doc_id"
    assert await service.count_documents("kb") == 1 and store.count("kb") == 1
    await service.delete("kb")
    with pytest.raises(CollectionNotFound):
        await service.get("kb")
