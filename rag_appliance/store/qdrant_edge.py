"""The embedded store: the Qdrant engine in-process (qdrant-edge), one EdgeShard per collection.

The files (layout, collection.json, the store lock, crash cleanup) are edge_layout's; the
background HNSW builds are edge_hnsw's; enable_sparse's copy of a shard is edge_upgrade's; how a
write is applied, journalled and flushed (durability) is edge_writes'; the search queries are
edge_search's; the engine config by collection size (quantization, on-disk vectors, HNSW
parameters) is edge_config's. This module is the VectorStore over them.

Threads: qdrant-edge calls never release the GIL, so they never run in parallel anyway. Each
collection has a lock held around every call on its shard, which makes "apply a write and
journal it" atomic with respect to an index build's snapshot and swap, and keeps calls off a
shard that the swap, delete_collection or close has closed. The store lock guards the collection
table and directory names; it is always taken before a collection lock, never after.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import qdrant_edge as qe

from rag_appliance.errors import CollectionNotFound, ServiceUnavailable
from rag_appliance.store import edge_aliases, edge_layout, edge_search, edge_upgrade, edge_writes
from rag_appliance.store.aliases import check_not_alias
from rag_appliance.store.base import (
    BOOL_INDEXES,
    DEFAULT_BM25,
    INTEGER_INDEXES,
    KEYWORD_INDEXES,
    Bm25Config,
    CollectionInfo,
    Filter,
    FusionMethod,
    Hit,
    Point,
    Provenance,
    Record,
    SearchMode,
    VectorStore,
)
from rag_appliance.store.bm25 import check_bm25
from rag_appliance.store.edge_config import EdgeTuning
from rag_appliance.store.edge_hnsw import IndexBuilder
from rag_appliance.store.edge_layout import EdgeCollection
from rag_appliance.store.provenance import provenance_conflict, utc_now
from rag_appliance.store.qdrant_filters import QdrantDialect, to_qdrant
from rag_appliance.store.search import plan as plan_search
from rag_appliance.store.validation import (
    check_collection_name,
    check_limit,
    check_payload,
    check_provenance,
    dense_vector,
    matrix,
    not_found,
    scroll_offset,
)

if TYPE_CHECKING:
    from rag_appliance.settings import Settings


def _match_bool(key: str, flag: bool) -> qe.ConditionType:
    # The binding reads a Python bool as an integer (bool subclasses int), which never
    # matches a JSON boolean; numpy.bool_ reaches its boolean variant.
    return qe.FieldCondition(key, match=qe.MatchValue(cast(bool, np.bool_(flag))))


# How qdrant-edge spells a filter (the translation itself is qdrant_filters').
EDGE_FILTERS: QdrantDialect[qe.Filter, qe.ConditionType] = QdrantDialect(
    match_value=lambda key, value: qe.FieldCondition(key, match=qe.MatchValue(value)),
    match_any=lambda key, values: qe.FieldCondition(key, match=qe.MatchAny(values)),
    match_bool=_match_bool,
    range=lambda key, gte, lt: qe.FieldCondition(key, range=qe.RangeFloat(gte=gte, lt=lt)),
    equals=lambda key, v: qe.FieldCondition(key, range=qe.RangeFloat(gte=v, lte=v)),
    any_of=lambda options: qe.Filter(should=options),
    filter=lambda must, must_not: qe.Filter(must=must, must_not=must_not),
)


def from_settings(settings: Settings) -> VectorStore:
    """The store under `data_dir/qdrant` (the registry's entry for backend `qdrant_edge`)."""
    return QdrantEdgeStore(
        settings.data_dir / "qdrant",
        hnsw_threshold=settings.store.hnsw_threshold,
        tuning=EdgeTuning.from_settings(settings.store),
    )


class QdrantEdgeStore:
    """VectorStore on embedded Qdrant shards under `path` (see the module docstring)."""

    def __init__(
        self, path: Path, *, hnsw_threshold: int = 20_000, tuning: EdgeTuning | None = None
    ) -> None:
        """Open (creating if needed) the store at `path`; shards are opened on first use.
        `tuning`: quantization, on-disk vectors and HNSW parameters by size (edge_config)."""
        self._index = IndexBuilder(hnsw_threshold, tuning)
        self._root = Path(path)
        self._dir = self._root / "collections"
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._closed = False
        self._lock_fd = edge_layout.lock_store(self._root / ".lock")
        try:
            self._collections = edge_layout.scan(self._dir)
            self._aliases = edge_aliases.load(self._root, self._collections)
        except BaseException:
            os.close(self._lock_fd)
            raise

    # -- VectorStore -------------------------------------------------------------------------

    def create_collection(
        self, name: str, provenance: Provenance, *, bm25: Bm25Config | None = DEFAULT_BM25
    ) -> CollectionInfo:
        """Create `name` with BM25 sparse vectors unless `bm25` is None (idempotent for the
        same provenance, keeping the existing BM25 config; Conflict for another provenance)."""
        check_collection_name(name)
        check_provenance(provenance)
        if bm25 is not None:
            check_bm25(bm25)
        with self._lock:
            self._check_open()
            existing = self._collections.get(name)
            if existing is None:
                check_not_alias(name, self._aliases)
                self._collections[name] = self._create(name, provenance, bm25)
        if existing is not None and existing.provenance != provenance:
            raise provenance_conflict(name, existing.provenance, provenance)
        return self.get_collection(name)

    def get_collection(self, name: str) -> CollectionInfo:
        """The collection's provenance and size."""
        with self._shard(name) as (c, shard):
            points = shard.info().points_count
            return CollectionInfo(c.name, c.provenance, points, c.created_at, c.bm25)

    def list_collections(self) -> list[CollectionInfo]:
        """Every collection, by name."""
        with self._lock:
            self._check_open()
            names = sorted(self._collections)
        infos = []
        for name in names:
            with contextlib.suppress(CollectionNotFound):  # deleted meanwhile
                infos.append(self.get_collection(name))
        return infos

    def delete_collection(self, name: str) -> None:
        """Delete the collection and its files (stopping an index build in progress)."""
        check_collection_name(name)
        with self._lock:
            self._check_open()
            c = self._collections.pop(name, None)
            if c is None:
                raise not_found(name)
            with c.lock:
                self._shut(c)
                trash = edge_layout.move_to_trash(c.dir)
            self._aliases = edge_aliases.without(self._root, self._aliases, lambda _, t: t == name)
        shutil.rmtree(trash, ignore_errors=True)

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        """Insert or replace points by id (Conflict if a vector has the wrong dimension)."""
        c = self._get(name)
        if not points:
            return
        vectors = matrix(points, c.provenance.dimension, name).tolist()
        # BM25 outside the lock, checked under it: enable_sparse may start or end meanwhile.
        config, upgrading = c.bm25, c.upgrading
        batch = edge_writes.batch(points, vectors, config)
        upgraded = None if upgrading is None else edge_writes.batch(points, vectors, upgrading)
        with self._shard(name) as (c, shard):
            if c.bm25 != config:  # enable_sparse swapped the shard in
                batch = edge_writes.batch(points, vectors, c.bm25)
            if c.upgrading != upgrading:
                upgraded = (
                    None if c.upgrading is None else edge_writes.batch(points, vectors, c.upgrading)
                )
            op = qe.UpdateOperation.upsert_points(batch)
            # While enable_sparse copies the shard, its journal gets the points with BM25.
            journalled = None if upgraded is None else qe.UpdateOperation.upsert_points(upgraded)
            edge_writes.apply(c, shard, op, len(batch), journalled=journalled)
            self._index.maybe_start(c, shard)

    def set_payload(self, name: str, flt: Filter, payload: dict[str, Any]) -> None:
        """Merge `payload`'s keys into the payload of every point matching `flt`."""
        check_payload(payload)
        selector = to_qdrant(flt, EDGE_FILTERS) or qe.Filter()
        op = qe.UpdateOperation.set_payload_by_filter(selector, payload)
        with self._shard(name) as (c, shard):
            edge_writes.apply(c, shard, op, 1)

    def delete(self, name: str, flt: Filter) -> None:
        """Delete every point matching `flt`."""
        selector = to_qdrant(flt, EDGE_FILTERS) or qe.Filter()
        op = qe.UpdateOperation.delete_points_by_filter(selector)
        with self._shard(name) as (c, shard):
            edge_writes.apply(c, shard, op, 1)

    def count(self, name: str, flt: Filter | None = None) -> int:
        """The exact number of points matching `flt` (all points without one)."""
        request = qe.CountRequest(exact=True, filter=to_qdrant(flt, EDGE_FILTERS))
        with self._shard(name) as (_, shard):
            return shard.count(request)

    def search(
        self,
        name: str,
        vector: np.ndarray | None,
        top_k: int,
        flt: Filter | None = None,
        score_threshold: float | None = None,
        *,
        mode: SearchMode = "dense",
        query_text: str | None = None,
        fusion: FusionMethod = "rrf",
        dense_weight: float | None = None,
        prefetch_limit: int | None = None,
        group_by_document: bool = False,
    ) -> list[Hit]:
        """The `top_k` best points for the mode, best first (see docs/stores.md for scores)."""
        c = self._get(name)
        plan = plan_search(
            name,
            c.provenance.dimension,
            c.bm25,
            vector,
            top_k,
            score_threshold,
            mode=mode,
            query_text=query_text,
            fusion=fusion,
            dense_weight=dense_weight,
            prefetch_limit=prefetch_limit,
            group_by_document=group_by_document,
        )
        selector = to_qdrant(flt, EDGE_FILTERS)
        with self._shard(name) as (_, shard):
            # One lock for the whole search: the weighted maxima and every grouping round see
            # the same points.
            return edge_search.search(shard, plan, selector, self._index.tuning)

    def scroll(
        self,
        name: str,
        flt: Filter | None,
        limit: int,
        offset: str | None = None,
        *,
        with_vectors: bool = False,
    ) -> tuple[list[Record], str | None]:
        """Up to `limit` points matching `flt` in id order from `offset`, and the next offset."""
        check_limit(limit, "limit")
        request = qe.ScrollRequest(
            offset=scroll_offset(offset),
            limit=limit,
            filter=to_qdrant(flt, EDGE_FILTERS),
            with_payload=True,
            with_vector=with_vectors,
        )
        with self._shard(name) as (_, shard):
            records, next_id = shard.scroll(request)
        page = [Record(str(r.id), r.payload or {}, dense_vector(r.vector)) for r in records]
        return page, None if next_id is None else str(next_id)

    def enable_sparse(
        self,
        name: str,
        bm25: Bm25Config = DEFAULT_BM25,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> CollectionInfo:
        """Give a dense-only collection BM25 vectors from its points' payload "text", in place
        (no-op when it has them); see edge_upgrade. Reads and writes go on meanwhile."""
        check_bm25(bm25)
        c = self._get(name)
        with c.upgrade_lock:
            if c.bm25 is None:
                edge_upgrade.upgrade(c, self._index, bm25, progress)
        return self.get_collection(name)

    def aliases(self) -> dict[str, str]:
        """Every alias and the collection it points to (see edge_aliases)."""
        with self._lock:
            self._check_open()
            return dict(self._aliases)

    def set_alias(self, alias: str, collection: str) -> None:
        """Create or repoint `alias` in one atomic rewrite of the alias table."""
        with self._lock:
            self._check_open()
            self._aliases = edge_aliases.with_alias(
                self._root, self._aliases, alias, collection, self._collections
            )

    def delete_alias(self, alias: str) -> None:
        """Drop `alias` (its collection stays); 404 when there is none."""
        with self._lock:
            self._check_open()
            self._aliases = edge_aliases.without_alias(self._root, self._aliases, alias)

    def close(self) -> None:
        """Stop index builds, flush and close every shard, and release the store."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            collections = list(self._collections.values())
        for c in collections:
            with c.lock:
                self._shut(c)
        for c in collections:
            builder = c.builder
            if builder is not None:
                builder.join(timeout=30)
        os.close(self._lock_fd)

    # -- testing and operations --------------------------------------------------------------

    def indexed_points(self, name: str) -> int:
        """How many of the collection's dense vectors are in HNSW segments (the rest: exact
        search)."""
        with self._shard(name) as (c, shard):
            return self._index.indexed(c, shard)

    def hold_builds(self, name: str) -> Callable[[], None]:
        """Hold the collection's index builds while an ingest call writes to it; the release."""
        return self._index.hold(self._get(name))

    def wait_for_index(self, name: str, timeout: float | None = None) -> bool:
        """Wait until no index build runs for the collection; False if one still runs."""
        return self._index.wait(self._get(name), timeout)

    # -- internals ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ServiceUnavailable("the vector store is closed")

    def _get(self, name: str) -> EdgeCollection:
        check_collection_name(name)
        with self._lock:
            self._check_open()
            c = self._collections.get(name)
        if c is None:
            raise not_found(name)
        return c

    @contextlib.contextmanager
    def _shard(self, name: str) -> Iterator[tuple[EdgeCollection, qe.EdgeShard]]:
        """The collection and its open shard, with the collection lock held."""
        c = self._get(name)
        with c.lock:
            if c.closed:  # deleted or closed after _get
                raise not_found(name)
            yield c, self._index.open(c)

    def _create(
        self, name: str, provenance: Provenance, bm25_config: Bm25Config | None
    ) -> EdgeCollection:
        """Make the directory, shard, payload indexes and collection.json (written last)."""
        directory = edge_layout.fresh_collection_dir(self._dir, name)
        c = EdgeCollection(
            name,
            directory,
            provenance,
            utc_now(),
            edge_layout.new_shard_name(),
            bm25=bm25_config,
        )
        shard = qe.EdgeShard.create(str(c.shard_dir), self._index.config(c))
        try:
            schemas = [(k, qe.PayloadSchemaType.Keyword) for k in KEYWORD_INDEXES]
            schemas += [(k, qe.PayloadSchemaType.Integer) for k in INTEGER_INDEXES]
            schemas += [(k, qe.PayloadSchemaType.Bool) for k in BOOL_INDEXES]
            for key, schema in schemas:
                shard.update(qe.UpdateOperation.create_field_index(key, schema))
            shard.flush()
            c.write_meta()
        except BaseException:
            shard.close()
            shutil.rmtree(directory, ignore_errors=True)
            raise
        c.shard = shard
        return c

    def _shut(self, c: EdgeCollection) -> None:
        """Stop the collection's build and close its shard (collection lock held)."""
        c.closed = True
        if c.proc is not None:
            c.proc.kill()
        if c.shard is not None:
            c.shard.close()
            c.shard = None
