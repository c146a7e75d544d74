"""CollectionService: what a collection is (provenance, commit flag, documents) and its 409 rule.

Ingestion and retrieval both go through it for collection-level questions; neither reaches into
the other. Points inside a collection are the pipeline's and the retriever's business.

Consistency (docs/consistency.md): counts are of committed chunks only; index calls hold a
collection's shared lock (`writing`) for their whole run and deletes take it exclusively, so a
delete waits for them and an index call arriving meanwhile waits, then recreates the collection.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import aiorwlock

from rag_appliance.auth.access import authorize_read, authorize_write, readable
from rag_appliance.embedding.models import ModelProfile
from rag_appliance.errors import CollectionNotFound, Conflict
from rag_appliance.store.aliased import aliased
from rag_appliance.store.base import (
    DEFAULT_BM25,
    Bm25Config,
    CollectionInfo,
    Filter,
    Match,
    Provenance,
    Range,
    VectorStore,
)

# Set on a document's chunks once all of them have landed: only these are searched and listed.
COMMITTED = Match("committed", (True,))
FIRST_CHUNKS = Filter(must=(Match("chunk_index", (0,)), COMMITTED))
COMMITTED_CHUNKS = Filter(must=(COMMITTED,))
# Written by an index call (or a migrate) still in flight, or left by one that died.
UNCOMMITTED = Filter(must=(Match("committed", (False,)),))
# How long a passed provenance check is trusted: every search checks, and on a Qdrant server a
# check is a round trip. A collection deleted meanwhile still fails in the store (404).
CHECK_TTL_S = 5.0
_MAX_REMEMBERED = 1024


def doc_filter(*doc_ids: str) -> Filter:
    """Every chunk of these documents."""
    return Filter(must=(Match("doc_id", tuple(doc_ids)),))


def served_provenance(profile: ModelProfile) -> Provenance:
    """The provenance of the vectors this server writes and searches with."""
    return Provenance(
        model=profile.name, dimension=profile.dimension, document_prefix=profile.document_prefix
    )


@dataclass(frozen=True)
class CollectionView(CollectionInfo):
    """A collection as listed: `points_count` counts committed chunks only (exactly those of the
    listed documents); `pending_points` the uncommitted ones of index calls in flight."""

    pending_points: int = 0


@dataclass
class _Gate:
    """A collection's readers/writer lock and how many tasks hold it or wait for it."""

    lock: aiorwlock.RWLock = field(default_factory=aiorwlock.RWLock)
    users: int = 0


@dataclass(frozen=True)
class DocumentInfo:
    """A document as listed: its id, chunk count, source, metadata, indexing time."""

    id: str
    chunks: int
    source: str | None
    metadata: dict[str, Any]
    indexed_at: str | None


class _Indexer(Protocol):
    collections: CollectionService


_S = TypeVar("_S", bound=_Indexer)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def holds_collection(
    method: Callable[Concatenate[_S, str, _P], Awaitable[_R]],
) -> Callable[Concatenate[_S, str, _P], Coroutine[Any, Any, _R]]:
    """Run an indexing method `(self, collection, ...)` inside `collections.writing(collection)`."""

    @functools.wraps(method)
    async def held(self: _S, collection: str, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        async with self.collections.writing(collection):
            return await method(self, collection, *args, **kwargs)

    return held


class CollectionService:
    """Creates, checks, lists and deletes collections and their documents for the served model.

    Every method that names a collection checks the request's key first (`auth.access`): reads
    need read access, writes write access, and listing shows only what the key may read.
    """

    def __init__(
        self,
        store: VectorStore,
        profile: ModelProfile,
        check_ttl_s: float = CHECK_TTL_S,
        bm25: Bm25Config | None = DEFAULT_BM25,
    ) -> None:
        # Every name the services use resolves its alias here (blue/green re-indexing).
        self.store = aliased(store)
        self.provenance = served_provenance(profile)
        self.bm25 = bm25  # what new collections get (None: dense only)
        self._ttl = check_ttl_s
        self._checked: dict[str, float] = {}  # name -> when its passed check expires
        self._sparse: dict[str, bool] = {}  # name -> has BM25 vectors (fixed at creation)
        self._gates: dict[str, _Gate] = {}  # name -> its lock, while anyone holds or awaits it

    # The decorator for the pipeline's `index`, reachable where CollectionService is imported.
    holding = staticmethod(holds_collection)

    @asynccontextmanager
    async def writing(self, name: str) -> AsyncIterator[None]:
        """Held by an index call for its whole run: the collection is not deleted meanwhile."""
        async with self._gate(name) as lock, lock.reader:
            yield

    @asynccontextmanager
    async def _exclusive(self, name: str) -> AsyncIterator[None]:
        """Held by deletes: waits for the index calls in flight; new ones wait behind it."""
        async with self._gate(name) as lock, lock.writer:
            yield

    @asynccontextmanager
    async def _gate(self, name: str) -> AsyncIterator[aiorwlock.RWLock]:
        # Dropped when nobody uses it: a lock per name ever seen would grow without bound.
        gate = self._gates.setdefault(name, _Gate())
        gate.users += 1
        try:
            yield gate.lock
        finally:
            gate.users -= 1
            if not gate.users:
                del self._gates[name]

    async def ensure(self, name: str) -> None:
        """Create the collection for the served model; 409 when it holds other vectors."""
        authorize_write(name)  # every index, upload and UI "create" comes through here
        try:
            await self.check(name)
            return
        except CollectionNotFound:
            pass
        try:
            info = await asyncio.to_thread(
                self.store.create_collection, name, self.provenance, bm25=self.bm25
            )
            self._sparse[name] = info.bm25 is not None
        except Conflict:  # created meanwhile with other vectors: answer with the one message
            await self.check(name)
            raise
        self._remember(name)

    async def check(self, name: str) -> None:
        """404 for a missing collection, 409 unless its provenance is the served one."""
        authorize_read(name)  # before the cache: a remembered check says nothing about the key
        if self._checked.get(name, 0.0) > time.monotonic():
            return
        info = await asyncio.to_thread(self.store.get_collection, name)
        if info.provenance != self.provenance:
            raise self._conflict(name, info.provenance, info.version)
        self._sparse[name] = info.bm25 is not None
        self._remember(name)

    async def has_sparse(self, name: str) -> bool:
        """Whether the collection has BM25 vectors (after the usual 404/409 check)."""
        await self.check(name)
        if name not in self._sparse:  # checked before this process learnt it
            info = await asyncio.to_thread(self.store.get_collection, name)
            self._sparse[name] = info.bm25 is not None
        return self._sparse[name]

    async def enable_sparse(
        self, name: str, progress: Callable[[int], None] | None = None
    ) -> CollectionView:
        """Give a collection of the served model BM25 vectors from its chunks' stored text, in
        place (no-op when it has them); 404/409 first, as for any write."""
        authorize_write(name)
        self._checked.pop(name, None)
        await self.check(name)
        # What new collections get (English defaults when BM25 is off for new collections).
        config = self.bm25 if self.bm25 is not None else DEFAULT_BM25
        try:
            info = await asyncio.to_thread(
                self.store.enable_sparse, name, config, progress=progress
            )
        finally:
            self._checked.pop(name, None)
            self._sparse.pop(name, None)
        self._sparse[name] = info.bm25 is not None
        return (await self._view(info))[0]

    def visible(self, conditions: Sequence[Match | Range] = ()) -> Filter:
        """A filter for these conditions over fully indexed (committed) chunks only."""
        return Filter(must=(*conditions, COMMITTED))

    async def all(self) -> list[tuple[CollectionView, int]]:
        """Every collection the key may read (whatever its model) with its document count."""
        infos = await asyncio.to_thread(self.store.list_collections)
        allowed = set(readable(info.name for info in infos))
        return list(await asyncio.gather(*(self._view(i) for i in infos if i.name in allowed)))

    async def get(self, name: str) -> tuple[CollectionView, int]:
        """One collection with its document count; 404 when missing."""
        authorize_read(name)
        info = await asyncio.to_thread(self.store.get_collection, name)
        return await self._view(info)

    async def _view(self, info: CollectionInfo) -> tuple[CollectionView, int]:
        """Exact counts (a Qdrant server's own points_count is approximate and counts drafts)."""
        name = info.name
        documents, committed, pending = await asyncio.gather(
            asyncio.to_thread(self.store.count, name, FIRST_CHUNKS),
            asyncio.to_thread(self.store.count, name, COMMITTED_CHUNKS),
            asyncio.to_thread(self.store.count, name, UNCOMMITTED),
        )
        values = {f.name: getattr(info, f.name) for f in fields(info)}
        view = CollectionView(**{**values, "points_count": committed}, pending_points=pending)
        return view, documents

    async def sweep_uncommitted(self) -> dict[str, int]:
        """Delete every collection's uncommitted chunks; returns how many went, by collection.

        Only safe where no writer can be mid-flight: the embedded store at startup, whose data
        directory lock keeps every other process out (a shared store's are only excluded).
        """
        swept: dict[str, int] = {}
        for info in await asyncio.to_thread(self.store.list_collections):
            async with self._exclusive(info.name):
                count = await asyncio.to_thread(self.store.count, info.name, UNCOMMITTED)
                if count:
                    await asyncio.to_thread(self.store.delete, info.name, UNCOMMITTED)
                    swept[info.name] = count
        return swept

    async def count_documents(self, name: str) -> int:
        """How many fully indexed documents the collection holds."""
        authorize_read(name)
        return await asyncio.to_thread(self.store.count, name, FIRST_CHUNKS)

    async def delete(self, name: str) -> None:
        """Drop a collection and all its points once its index calls are done; 404 when missing."""
        authorize_write(name)
        async with self._exclusive(name):
            self._checked.pop(name, None)
            self._sparse.pop(name, None)
            await asyncio.to_thread(self.store.get_collection, name)
            await asyncio.to_thread(self.store.delete_collection, name)

    async def documents(
        self, name: str, limit: int, after: str | None = None
    ) -> tuple[list[DocumentInfo], str | None]:
        """One page of fully indexed documents and the cursor of the next page."""
        authorize_read(name)
        records, cursor = await asyncio.to_thread(
            self.store.scroll, name, FIRST_CHUNKS, limit, after
        )
        docs = [
            DocumentInfo(
                id=r.payload["doc_id"],
                chunks=int(r.payload.get("chunk_count", 0)),
                source=r.payload.get("source"),
                metadata=r.payload.get("metadata") or {},
                indexed_at=r.payload.get("indexed_at"),
            )
            for r in records
        ]
        return docs, cursor

    async def document(self, name: str, doc_id: str) -> tuple[DocumentInfo, list[str]]:
        """A fully indexed document and its chunks' texts in order; 404 when it is not there."""
        authorize_read(name)
        flt = Filter(must=(Match("doc_id", (doc_id,)), COMMITTED))
        records: list[Any] = []
        cursor: str | None = None
        while True:
            page, cursor = await asyncio.to_thread(self.store.scroll, name, flt, 256, cursor)
            records += page
            if cursor is None:
                break
        if not records:
            raise CollectionNotFound(
                f"document '{doc_id}' is not in collection '{name}'",
                param="doc_id",
                code="document_not_found",
            )
        records.sort(key=lambda r: int(r.payload.get("chunk_index", 0)))
        first = records[0].payload
        info = DocumentInfo(
            id=doc_id,
            chunks=len(records),
            source=first.get("source"),
            metadata=first.get("metadata") or {},
            indexed_at=first.get("indexed_at"),
        )
        return info, [str(r.payload.get("text", "")) for r in records]

    async def delete_document(self, name: str, doc_id: str) -> int:
        """Delete a document's chunks and return how many; 404 when it is not there."""
        authorize_write(name)
        await self.check(name)
        flt = doc_filter(doc_id)
        # After the index calls in flight: one writing this document would commit what is left.
        async with self._exclusive(name):
            count = await asyncio.to_thread(self.store.count, name, flt)
            if not count:
                raise CollectionNotFound(
                    f"document '{doc_id}' is not in collection '{name}'",
                    param="doc_id",
                    code="document_not_found",
                )
            await asyncio.to_thread(self.store.delete, name, flt)
        return count

    def _remember(self, name: str) -> None:
        now = time.monotonic()
        if len(self._checked) >= _MAX_REMEMBERED:
            self._checked = {n: t for n, t in self._checked.items() if t > now}
        self._checked[name] = now + self._ttl

    def _conflict(self, name: str, have: Provenance, version: str | None = None) -> Conflict:
        want = self.provenance
        if version is not None:  # an alias: re-indexed with another model
            return Conflict(
                f"collection '{name}' was re-indexed with model '{have.model}' ({_describe(have)};"
                f" its current version is '{version}'); this server embeds with '{want.model}'"
                f" ({_describe(want)}). Serve '{have.model}' (embedding.model), or re-index it"
                f" back: rag-appliance reindex --collection {name} --model {want.model}",
                param="collection",
            )
        return Conflict(
            f"collection '{name}' holds vectors of model '{have.model}' ({_describe(have)});"
            f" this server embeds with '{want.model}' ({_describe(want)})."
            " Use another collection, or serve that model.",
            param="collection",
        )


def _describe(p: Provenance) -> str:
    return f"{p.dimension} dims, {p.distance}, document prefix {p.document_prefix!r}"
