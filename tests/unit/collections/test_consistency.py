"""Consistent counts and deletes: committed points only, uncommitted ones swept at start on the
embedded store, and deletes that wait for the index calls in flight (real embedded store)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag_appliance.collections.service import (
    CollectionService,
    CollectionView,
    served_provenance,
)
from rag_appliance.errors import CollectionNotFound
from rag_appliance.ingest.pipeline import Document
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.conftest import make_services, make_settings
from tests.fakes import FAKE_PROFILE, FakeEncoder
from tests.unit.collections.test_service import chunk


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QdrantEdgeStore]:
    s = QdrantEdgeStore(tmp_path / "store")
    yield s
    s.close()


@pytest.fixture
def service(store: QdrantEdgeStore) -> CollectionService:
    return CollectionService(store, FAKE_PROFILE)


def _half_indexed(store: QdrantEdgeStore) -> None:
    """Document a whole (2 chunks), and 3 of 5 chunks of 'crashed' never committed."""
    store.upsert("kb", [chunk("a", 0, 2), chunk("a", 1, 2)])
    store.upsert("kb", [chunk("crashed", i, 5, committed=False) for i in range(3)])


async def test_points_count_committed_chunks_and_pending_the_rest(
    service: CollectionService, store: QdrantEdgeStore
) -> None:
    await service.ensure("kb")
    _half_indexed(store)
    info, documents = await service.get("kb")
    assert isinstance(info, CollectionView)
    assert (info.points_count, info.pending_points, documents) == (2, 3, 1)
    [(listed, n)] = await service.all()
    assert (listed.points_count, listed.pending_points, n) == (2, 3, 1)


async def test_sweep_deletes_uncommitted_chunks_only(
    service: CollectionService, store: QdrantEdgeStore
) -> None:
    await service.ensure("kb")
    await service.ensure("clean")
    _half_indexed(store)
    assert await service.sweep_uncommitted() == {"kb": 3}
    assert store.count("kb") == 2
    info, documents = await service.get("kb")
    assert (info.points_count, info.pending_points, documents) == (2, 0, 1)
    assert await service.sweep_uncommitted() == {}


@pytest.mark.parametrize(("backend", "left"), [("qdrant_edge", 0), ("qdrant_server", 3)])
async def test_services_start_sweeps_only_the_embedded_store(
    store: QdrantEdgeStore, tokenizer: Any, backend: str, left: int
) -> None:
    # A shared store's uncommitted chunks may be another appliance's index call in flight.
    store.create_collection("kb", served_provenance(FAKE_PROFILE))
    _half_indexed(store)
    settings = make_settings(generation={"enabled": False}, store={"backend": backend})
    services = make_services(settings, FakeEncoder(), store, tokenizer=tokenizer)
    await services.start()
    try:
        assert store.count("kb") == 2 + left
        info, _ = await services.require_collections().get("kb")
        assert (info.points_count, info.pending_points) == (2, left)
    finally:
        services.running = False
        await services.embedding.stop()


async def test_delete_waits_for_the_writers_and_new_writers_wait_for_it(
    service: CollectionService,
) -> None:
    await service.ensure("kb")
    order: list[str] = []
    inside = asyncio.Event()
    release = asyncio.Event()

    async def index_call(name: str, hold: asyncio.Event | None) -> None:
        async with service.writing("kb"):
            order.append(f"{name} in")
            if hold is not None:
                inside.set()
                await hold.wait()
            order.append(f"{name} out")

    async def delete() -> None:
        await service.delete("kb")
        order.append("deleted")

    first = asyncio.create_task(index_call("first", release))
    await inside.wait()
    deleting = asyncio.create_task(delete())
    await asyncio.sleep(0.05)
    late = asyncio.create_task(index_call("late", None))  # arrives while the delete waits
    await asyncio.sleep(0.05)
    assert order == ["first in"]  # the delete waits for first; late waits behind the delete
    release.set()
    await asyncio.gather(first, deleting, late)
    assert order == ["first in", "first out", "deleted", "late in", "late out"]
    assert service._gates == {}  # nothing kept once nobody holds or awaits a lock


async def test_a_cancelled_waiter_leaves_the_lock_usable(service: CollectionService) -> None:
    await service.ensure("kb")
    held = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with service.writing("kb"):
            held.set()
            await release.wait()

    task = asyncio.create_task(holder())
    await held.wait()
    waiting = asyncio.create_task(service.delete("kb"))
    await asyncio.sleep(0.02)
    waiting.cancel()  # a client that gave up on its DELETE
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    await task
    await asyncio.wait_for(service.delete("kb"), 5)
    with pytest.raises(CollectionNotFound):
        await service.get("kb")
    assert service._gates == {}


async def test_index_then_delete_in_one_gather_is_whole_or_gone(
    store: QdrantEdgeStore, tokenizer: Any
) -> None:
    # Through the pipeline: the delete lands between whole index calls, never inside one.
    settings = make_settings(generation={"enabled": False})
    services = make_services(settings, FakeEncoder(), store, tokenizer=tokenizer)
    await services.start()
    try:
        pipeline = services.require_pipeline()
        collections = services.require_collections()
        docs = [
            Document(f"Document {i} about goats and islands. " * 30, id=f"d{i}") for i in range(4)
        ]
        await pipeline.index("kb", docs[:1])
        await asyncio.gather(
            pipeline.index("kb", docs[1:]), collections.delete("kb"), pipeline.index("kb", docs)
        )
        info, documents = await collections.get("kb")
        listed, _ = await collections.documents("kb", 100)
        assert documents == len(listed) == 4
        assert info.points_count == sum(d.chunks for d in listed) == store.count("kb")
        assert info.pending_points == 0
    finally:
        services.running = False
        await services.embedding.stop()
