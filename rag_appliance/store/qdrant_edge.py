"""The embedded store: the Qdrant engine in-process (qdrant-edge), one EdgeShard per collection.

The files (layout, collection.json, the store lock, crash cleanup) are edge_layout's; the
background HNSW builds are edge_hnsw's; enable_sparse's copy of a shard is edge_upgrade's. This
module is the VectorStore over them.

Durability: every update is in the shard's write-ahead log before `update` returns, and the WAL
is written through the page cache, so an acknowledged upsert survives the process being
SIGKILLed (tested) without an fsync per write; an OS crash or power loss may lose the latest
writes. The shard is flushed every `_FLUSH_POINTS` written points and on close: until a flush,
the WAL keeps every vector, so it would grow without bound and a restart would replay all of it
(measured: ~1 s per 60k x 384 points; a flush costs ~100 ms).

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

from rag_appliance.errors import CollectionNotFound, InvalidRequest, ServiceUnavailable
from rag_appliance.store import edge_layout, edge_upgrade
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
from rag_appliance.store.bm25 import VECTOR as SPARSE
from rag_appliance.store.bm25 import check_bm25, document_vector
from rag_appliance.store.edge_hnsw import IndexBuilder
from rag_appliance.store.edge_layout import EdgeCollection
from rag_appliance.store.provenance import provenance_conflict, utc_now
from rag_appliance.store.qdrant_filters import QdrantDialect, to_qdrant
from rag_appliance.store.search import RRF_K, SearchPlan, weighted_coefficients
from rag_appliance.store.search import plan as plan_search
from rag_appliance.store.search import run as run_search
from rag_appliance.store.validation import (
    check_collection_name,
    check_limit,
    check_payload,
    check_provenance,
    matrix,
    not_found,
    point_id,
    scroll_offset,
)

if TYPE_CHECKING:
    from rag_appliance.settings import Settings

_FLUSH_POINTS = 50_000


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
        settings.data_dir / "qdrant", hnsw_threshold=settings.store.hnsw_threshold
    )


class QdrantEdgeStore:
    """VectorStore on embedded Qdrant shards under `path` (see the module docstring)."""

    def __init__(self, path: Path, *, hnsw_threshold: int = 20_000) -> None:
        """Open (creating if needed) the store at `path`; shards are opened on first use."""
        self._index = IndexBuilder(hnsw_threshold)
        self._root = Path(path)
        self._dir = self._root / "collections"
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._closed = False
        self._lock_fd = edge_layout.lock_store(self._root / ".lock")
        try:
            self._collections = edge_layout.scan(self._dir)
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
        shutil.rmtree(trash, ignore_errors=True)

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        """Insert or replace points by id (Conflict if a vector has the wrong dimension)."""
        c = self._get(name)
        if not points:
            return
        vectors = matrix(points, c.provenance.dimension, name).tolist()
        # BM25 outside the lock, checked under it: enable_sparse may start or end meanwhile.
        config, upgrading = c.bm25, c.upgrading
        batch = _batch(points, vectors, config)
        upgraded = None if upgrading is None else _batch(points, vectors, upgrading)
        with self._shard(name) as (c, shard):
            if c.bm25 != config:  # enable_sparse swapped the shard in
                batch = _batch(points, vectors, c.bm25)
            if c.upgrading != upgrading:
                upgraded = None if c.upgrading is None else _batch(points, vectors, c.upgrading)
            op = qe.UpdateOperation.upsert_points(batch)
            # While enable_sparse copies the shard, its journal gets the points with BM25.
            journalled = None if upgraded is None else qe.UpdateOperation.upsert_points(upgraded)
            self._apply(c, shard, op, len(batch), journalled=journalled)
            self._index.maybe_start(c, shard)

    def set_payload(self, name: str, flt: Filter, payload: dict[str, Any]) -> None:
        """Merge `payload`'s keys into the payload of every point matching `flt`."""
        check_payload(payload)
        selector = to_qdrant(flt, EDGE_FILTERS) or qe.Filter()
        op = qe.UpdateOperation.set_payload_by_filter(selector, payload)
        with self._shard(name) as (c, shard):
            self._apply(c, shard, op, 1)

    def delete(self, name: str, flt: Filter) -> None:
        """Delete every point matching `flt`."""
        selector = to_qdrant(flt, EDGE_FILTERS) or qe.Filter()
        op = qe.UpdateOperation.delete_points_by_filter(selector)
        with self._shard(name) as (c, shard):
            self._apply(c, shard, op, 1)

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
            formula = _formula(shard, plan, selector) if _is_weighted(plan) else None

            def fetch(limit: int, candidates: int) -> list[Hit]:
                scored = shard.query(_request(plan, selector, limit, candidates, formula))
                return [Hit(str(p.id), float(p.score), p.payload or {}) for p in scored]

            return run_search(plan, fetch)

    def scroll(
        self, name: str, flt: Filter | None, limit: int, offset: str | None = None
    ) -> tuple[list[Record], str | None]:
        """Up to `limit` points matching `flt` in id order from `offset`, and the next offset."""
        check_limit(limit, "limit")
        request = qe.ScrollRequest(
            offset=scroll_offset(offset),
            limit=limit,
            filter=to_qdrant(flt, EDGE_FILTERS),
            with_payload=True,
            with_vector=False,
        )
        with self._shard(name) as (_, shard):
            records, next_id = shard.scroll(request)
        page = [Record(str(r.id), r.payload or {}) for r in records]
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

    def _apply(
        self,
        c: EdgeCollection,
        shard: qe.EdgeShard,
        op: qe.UpdateOperation,
        n: int,
        *,
        journalled: qe.UpdateOperation | None = None,
    ) -> None:
        """Apply a write (collection lock held), journal it (or `journalled`, its form for the
        new shard) for a running index build or upgrade, and flush now and then."""
        shard.update(op)
        if c.journal is not None:
            c.journal.append(op if journalled is None else journalled)
        c.unflushed += n
        if c.unflushed >= _FLUSH_POINTS:
            shard.flush()
            c.unflushed = 0

    def _shut(self, c: EdgeCollection) -> None:
        """Stop the collection's build and close its shard (collection lock held)."""
        c.closed = True
        if c.proc is not None:
            c.proc.kill()
        if c.shard is not None:
            c.shard.close()
            c.shard = None


def _batch(
    points: Sequence[Point], vectors: list[list[float]], bm25_config: Bm25Config | None
) -> list[qe.Point]:
    """The points for qdrant-edge, with BM25 vectors under `bm25_config` (None: dense only)."""
    try:
        return [
            qe.Point(point_id(p.id), _vectors(bm25_config, p, v), check_payload(p.payload))
            for p, v in zip(points, vectors, strict=True)
        ]
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidRequest(f"invalid point payload: {exc}", param="payload") from None


def _vectors(bm25_config: Bm25Config | None, point: Point, dense: list[float]) -> qe.Vector:
    """The point's dense vector, and its BM25 vector under `bm25_config` if there is one."""
    if bm25_config is None:
        return dense
    sparse = document_vector(bm25_config, point.text_for_sparse)
    if sparse is None:
        return dense
    return {"": dense, SPARSE: sparse}


def _is_weighted(plan: SearchPlan) -> bool:
    return plan.mode == "hybrid" and plan.fusion == "weighted"


def _arms(
    plan: SearchPlan, selector: qe.Filter | None, limit: int
) -> list[tuple[qe.Query, qe.Filter | None, int]]:
    """The plan's queries (dense first), each with the filter and a limit."""
    arms = []
    if plan.dense is not None:
        arms.append((qe.Query.Nearest(plan.dense), selector, limit))
    if plan.sparse is not None:
        terms = qe.SparseVector(plan.sparse.indices, plan.sparse.values)
        arms.append((qe.Query.Nearest(terms, using=SPARSE), selector, limit))
    return arms


def _request(
    plan: SearchPlan,
    selector: qe.Filter | None,
    limit: int,
    candidates: int,
    formula: qe.Formula | None,
) -> qe.QueryRequest:
    """One engine query for the plan: `limit` results from `candidates` per hybrid arm."""
    if plan.mode != "hybrid":
        ((query, flt, _),) = _arms(plan, selector, limit)
        return qe.QueryRequest(
            limit=limit,
            query=query,
            filter=flt,
            score_threshold=plan.score_threshold,
            with_payload=True,
            with_vector=False,
        )
    # The stubs declare the fusions as classes nested in Fusion, not as Fusion values.
    fused: qe.ScoringQueryType
    if plan.fusion == "rrf":
        fused = cast(qe.Fusion, qe.Fusion.Rrf(k=RRF_K))
    elif plan.fusion == "dbsf":
        fused = cast(qe.Fusion, qe.Fusion.Dbsf())
    else:
        assert formula is not None
        fused = formula
    arms = _arms(plan, selector, candidates)
    return qe.QueryRequest(
        limit=limit,
        # The filter goes to each arm, so every candidate of either arm satisfies it.
        prefetches=[qe.Prefetch(n, query=q, filter=f) for q, f, n in arms],
        query=fused,
        score_threshold=plan.score_threshold,
        with_payload=True,
        with_vector=False,
    )


def _formula(shard: qe.EdgeShard, plan: SearchPlan, selector: qe.Filter | None) -> qe.Formula:
    """The weighted fusion of the plan's arms, normalised by each arm's best score."""
    best = shard.query_batch(
        qe.QueryBatchRequest(
            [qe.QueryRequest(limit=1, query=q, filter=f) for q, f, _ in _arms(plan, selector, 1)]
        )
    )
    tops = [float(hits[0].score) if hits else None for hits in best]
    best_dense = tops[0]
    best_sparse = tops[1] if len(tops) > 1 else None
    dense_factor, sparse_factor = weighted_coefficients(plan.dense_weight, best_dense, best_sparse)
    E = qe.Expression
    terms = [E.Mult([E.Constant(dense_factor), E.Variable("$score[0]")])]
    if plan.sparse is not None:
        terms.append(E.Mult([E.Constant(sparse_factor), E.Variable("$score[1]")]))
    # A chunk that only one arm found scores 0 in the other one.
    return qe.Formula(E.Sum(terms), defaults={"$score[0]": 0.0, "$score[1]": 0.0})
