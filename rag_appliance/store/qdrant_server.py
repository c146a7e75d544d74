"""The scale-out store: a Qdrant server or cluster through qdrant-client.

Provenance lives in Qdrant itself, as the collection's metadata (under the "rag_appliance" key),
so every replica of the appliance sharing one Qdrant sees the same model/dimension (and BM25
config) for a collection. Collections without that key were not made by the appliance: they are
left out of list_collections and refused (Conflict) by the other methods.

Threads: the remote client is thread-safe; the in-process `:memory:`/path client is not, so its
calls are serialised with a lock.

enable_sparse adds the `bm25` sparse vector to the existing collection (Qdrant's "create named
vector", 1.18 and later), sets every point's BM25 vector from its payload "text" in pages
(`update_vectors`, which leaves the dense vector alone), and records the BM25 config in the
metadata last: until then the collection stays dense-only for every replica, and a crash only
leaves points with unused BM25 vectors behind (running it again finishes the job). Meanwhile this
store's own upserts carry BM25 vectors; other replicas re-read a dense-only collection's
metadata every few seconds (`_DENSE_META_TTL_S`), so they start writing BM25 vectors and
searching them soon after. Writes that other replicas make during the upgrade may lack BM25
vectors: upgrade a collection while only this store writes to it.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from rag_appliance.errors import CollectionNotFound, Conflict, InvalidRequest
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
from rag_appliance.store.provenance import (
    bm25_from_dict,
    bm25_to_dict,
    provenance_conflict,
    provenance_from_dict,
    provenance_to_dict,
    utc_now,
)
from rag_appliance.store.qdrant_filters import QdrantDialect, to_qdrant
from rag_appliance.store.search import SearchPlan, weighted_coefficients
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

_META_KEY = "rag_appliance"
_FORMAT = 1
# How long a dense-only collection's metadata is trusted: another replica may add BM25 vectors.
_DENSE_META_TTL_S = 5.0
# Points per scroll page and per update_vectors request of enable_sparse.
_UPGRADE_PAGE = 256
_INDEXES = {
    **dict.fromkeys(KEYWORD_INDEXES, models.PayloadSchemaType.KEYWORD),
    **dict.fromkeys(INTEGER_INDEXES, models.PayloadSchemaType.INTEGER),
    **dict.fromkeys(BOOL_INDEXES, models.PayloadSchemaType.BOOL),
}

# How qdrant-client spells a filter (the translation itself is qdrant_filters').
SERVER_FILTERS: QdrantDialect[models.Filter, models.Condition] = QdrantDialect(
    match_value=lambda key, value: models.FieldCondition(
        key=key, match=models.MatchValue(value=value)
    ),
    match_any=lambda key, values: models.FieldCondition(key=key, match=models.MatchAny(any=values)),
    match_bool=lambda key, flag: models.FieldCondition(
        key=key, match=models.MatchValue(value=flag)
    ),
    range=lambda key, gte, lt: models.FieldCondition(key=key, range=models.Range(gte=gte, lt=lt)),
    equals=lambda key, v: models.FieldCondition(key=key, range=models.Range(gte=v, lte=v)),
    any_of=lambda options: models.Filter(should=options),
    filter=lambda must, must_not: models.Filter(must=must, must_not=must_not),
)


def from_settings(settings: Settings) -> VectorStore:
    """The store on `store.url` (the registry's entry for backend `qdrant_server`)."""
    store = settings.store
    assert store.url is not None  # enforced by StoreSettings
    return QdrantServerStore.from_url(store.url, store.api_key, timeout=store.timeout_s)


@dataclass(frozen=True)
class _Meta:
    """What the collection metadata records."""

    provenance: Provenance
    created_at: str
    bm25: Bm25Config | None = None  # None: dense only (made before sparse vectors existed)


class QdrantServerStore:
    """VectorStore on a Qdrant server; collection `name` is `prefix + name` on the server."""

    def __init__(self, client: QdrantClient, *, prefix: str = "") -> None:
        """Use `client`; `prefix` namespaces this appliance's collections on a shared server."""
        if prefix:
            check_collection_name(prefix)
        self._client = client
        self._prefix = prefix
        options = client.init_options
        local = options.get("location") == ":memory:" or options.get("path") is not None
        self._serial: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if local else contextlib.nullcontext()
        )
        # Provenance never changes while a collection exists; cached to spare a round trip
        # (a dense-only collection's for a few seconds only: enable_sparse changes it).
        self._meta: dict[str, _Meta] = {}
        self._meta_read: dict[str, float] = {}  # name -> when its metadata was read
        # Collections this store is giving BM25 vectors: its upserts to them carry them.
        self._upgrading: dict[str, Bm25Config] = {}

    @classmethod
    def from_url(
        cls, url: str, api_key: str | None = None, prefix: str = "", *, timeout: float = 30.0
    ) -> QdrantServerStore:
        """A store on the Qdrant server at `url` (REST), with a request timeout in seconds."""
        client = QdrantClient(
            url=url,
            api_key=api_key,
            timeout=max(1, math.ceil(timeout)),
            # The check is a blocking request at construction; the first call reports errors.
            check_compatibility=False,
        )
        return cls(client, prefix=prefix)

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
        full = self._full(name)
        meta = _Meta(provenance, utc_now(), bm25)
        # The engine applies IDF; the points' vectors carry BM25's term frequencies (bm25.py).
        sparse = {SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)}
        with self._serial:
            if not self._client.collection_exists(full):
                try:
                    self._client.create_collection(
                        full,
                        vectors_config=models.VectorParams(
                            size=provenance.dimension, distance=models.Distance.COSINE
                        ),
                        sparse_vectors_config=sparse if bm25 is not None else None,
                        metadata={_META_KEY: _meta_to_dict(meta)},
                    )
                except Exception:
                    # Another replica may have created it meanwhile: then compare below.
                    if not self._client.collection_exists(full):
                        raise
        stored = self._load_meta(name, refresh=True)
        if stored.provenance != provenance:
            raise provenance_conflict(name, stored.provenance, provenance)
        self._ensure_indexes(name)
        return self.get_collection(name)

    def get_collection(self, name: str) -> CollectionInfo:
        """The collection's provenance and size."""
        meta = self._load_meta(name)
        return CollectionInfo(name, meta.provenance, self.count(name), meta.created_at, meta.bm25)

    def list_collections(self) -> list[CollectionInfo]:
        """Every appliance collection under this store's prefix, by name."""
        with self._serial:
            described = self._client.get_collections().collections
        infos = []
        for full in sorted(d.name for d in described):
            if not full.startswith(self._prefix):
                continue
            name = full[len(self._prefix) :]
            with contextlib.suppress(InvalidRequest, CollectionNotFound, Conflict):
                infos.append(self.get_collection(name))
        return infos

    def delete_collection(self, name: str) -> None:
        """Delete the collection."""
        self._load_meta(name, refresh=True)
        with self._call(name):
            self._client.delete_collection(self._full(name))
        self._meta.pop(name, None)

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        """Insert or replace points by id (Conflict if a vector has the wrong dimension)."""
        meta = self._load_meta(name)
        if not points:
            return
        vectors = matrix(points, meta.provenance.dimension, name).tolist()
        config = meta.bm25 or self._upgrading.get(name)
        batch = [
            models.PointStruct(
                id=point_id(p.id), vector=_vectors(config, p, v), payload=check_payload(p.payload)
            )
            for p, v in zip(points, vectors, strict=True)
        ]
        with self._call(name):
            self._client.upsert(self._full(name), points=batch, wait=True)

    def set_payload(self, name: str, flt: Filter, payload: dict[str, Any]) -> None:
        """Merge `payload`'s keys into the payload of every point matching `flt`."""
        check_payload(payload)
        selector = models.FilterSelector(filter=to_qdrant(flt, SERVER_FILTERS) or models.Filter())
        self._load_meta(name)
        with self._call(name):
            self._client.set_payload(self._full(name), payload, points=selector, wait=True)

    def delete(self, name: str, flt: Filter) -> None:
        """Delete every point matching `flt`."""
        selector = models.FilterSelector(filter=to_qdrant(flt, SERVER_FILTERS) or models.Filter())
        self._load_meta(name)
        with self._call(name):
            self._client.delete(self._full(name), points_selector=selector, wait=True)

    def count(self, name: str, flt: Filter | None = None) -> int:
        """The exact number of points matching `flt` (all points without one)."""
        query_filter = to_qdrant(flt, SERVER_FILTERS)
        self._load_meta(name)
        with self._call(name):
            result = self._client.count(self._full(name), count_filter=query_filter, exact=True)
        return result.count

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
        meta = self._load_meta(name)
        plan = plan_search(
            name,
            meta.provenance.dimension,
            meta.bm25,
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
        selector = to_qdrant(flt, SERVER_FILTERS)
        full = self._full(name)
        with self._refused(plan):
            formula = self._formula(name, plan, selector) if _is_weighted(plan) else None

            def fetch(limit: int, candidates: int) -> list[Hit]:
                if plan.mode == "hybrid":
                    arms = _arms(plan, selector, candidates)
                    query = _fusion(plan, formula)
                    kwargs: dict[str, Any] = {"prefetch": arms, "query": query}
                else:
                    (arm,) = _arms(plan, selector, limit)
                    kwargs = {"query": arm.query, "using": arm.using, "query_filter": arm.filter}
                with self._call(name):
                    response = self._client.query_points(
                        full,
                        limit=limit,
                        score_threshold=plan.score_threshold,
                        with_payload=True,
                        with_vectors=False,
                        **kwargs,
                    )
                return [Hit(str(p.id), float(p.score), p.payload or {}) for p in response.points]

            return run_search(plan, fetch)

    def scroll(
        self, name: str, flt: Filter | None, limit: int, offset: str | None = None
    ) -> tuple[list[Record], str | None]:
        """Up to `limit` points matching `flt` in id order from `offset`, and the next offset."""
        check_limit(limit, "limit")
        start = scroll_offset(offset)
        query_filter = to_qdrant(flt, SERVER_FILTERS)
        self._load_meta(name)
        with self._call(name):
            records, next_id = self._client.scroll(
                self._full(name),
                scroll_filter=query_filter,
                limit=limit,
                offset=start,
                with_payload=True,
                with_vectors=False,
            )
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
        (no-op when it has them); see the module docstring."""
        check_bm25(bm25)
        meta = self._load_meta(name, refresh=True)
        if meta.bm25 is None:
            self._create_sparse_vector(name)
            self._upgrading[name] = bm25
            try:
                self._fill_sparse(name, bm25, progress)
                # Writes that were in flight when the upgrade started carry no BM25 vector.
                self._fill_sparse(name, bm25, None)
                upgraded = _Meta(meta.provenance, meta.created_at, bm25)
                with self._call(name):
                    self._client.update_collection(
                        self._full(name), metadata={_META_KEY: _meta_to_dict(upgraded)}
                    )
                self._meta[name] = upgraded
            finally:
                self._upgrading.pop(name, None)
        return self.get_collection(name)

    def close(self) -> None:
        """Close the client's connections."""
        with self._serial:
            self._client.close()

    # -- internals ---------------------------------------------------------------------------

    def _full(self, name: str) -> str:
        return f"{self._prefix}{name}"

    @contextlib.contextmanager
    def _call(self, name: str) -> Iterator[None]:
        """Serialise local-mode calls and turn 'no such collection' into CollectionNotFound."""
        try:
            with self._serial:
                yield
        except UnexpectedResponse as exc:
            self._meta.pop(name, None)  # it may have been deleted or recreated elsewhere
            if exc.status_code == 404:
                raise not_found(name) from None
            raise
        except ValueError as exc:
            self._meta.pop(name, None)
            # The local client's way of saying 404.
            if str(exc).startswith(f"Collection {self._full(name)} not found"):
                raise not_found(name) from None
            raise

    def _load_meta(self, name: str, *, refresh: bool = False) -> _Meta:
        """The collection's recorded provenance (cached), or CollectionNotFound."""
        check_collection_name(name)
        cached = None if refresh else self._meta.get(name)
        if cached is not None and (
            cached.bm25 is not None
            or time.monotonic() - self._meta_read.get(name, 0.0) < _DENSE_META_TTL_S
        ):
            return cached
        read_at = time.monotonic()
        with self._call(name):
            info = self._client.get_collection(self._full(name))
        meta = _meta_from_dict(info.config.metadata)
        if meta is None:
            raise Conflict(
                f"collection {name!r} exists on the Qdrant server but was not created by "
                "rag-appliance (it has no provenance metadata)",
                param="collection",
            )
        self._meta[name] = meta
        self._meta_read[name] = read_at
        return meta

    def _create_sparse_vector(self, name: str) -> None:
        """Add the `bm25` sparse vector to an existing collection (no-op when it is there)."""
        create = getattr(self._client, "create_vector_name", None)
        if create is None:
            raise _no_named_vectors("this qdrant-client has no create_vector_name")
        config = models.SparseVectorNameConfig(
            sparse=models.SparseVectorConfig(modifier=models.Modifier.IDF)
        )
        try:
            with self._call(name):
                create(self._full(name), SPARSE, config, wait=True)
        except (UnexpectedResponse, CollectionNotFound) as exc:
            # A Qdrant before 1.18 has no such route: it answers 404 (or 405) for it.
            self._load_meta(name, refresh=True)  # CollectionNotFound if it is really gone
            status = exc.status_code if isinstance(exc, UnexpectedResponse) else 404
            if status not in (404, 405):
                raise
            raise _no_named_vectors(f"the server answered {status}") from None

    def _fill_sparse(
        self, name: str, bm25: Bm25Config, progress: Callable[[int], None] | None
    ) -> None:
        """Set the BM25 vector of every point without one from its "text" (none without it)."""
        full = self._full(name)
        # Points already done (by an earlier, interrupted run too) are skipped.
        todo = models.Filter(must_not=[models.HasVectorCondition(has_vector=SPARSE)])
        offset: models.ExtendedPointId | None = None
        while True:
            with self._call(name):
                records, offset = self._client.scroll(
                    full,
                    scroll_filter=todo,
                    limit=_UPGRADE_PAGE,
                    offset=offset,
                    with_payload=["text"],
                    with_vectors=False,
                )
            updates = []
            for r in records:
                text = (r.payload or {}).get("text")
                sparse = document_vector(bm25, text) if isinstance(text, str) else None
                if sparse is not None:
                    vector = models.SparseVector(
                        indices=list(sparse.indices), values=list(sparse.values)
                    )
                    updates.append(models.PointVectors(id=r.id, vector={SPARSE: vector}))
            if updates:
                self._update_vectors(name, updates)
            if progress is not None and records:
                progress(len(records))
            if offset is None:
                return

    def _update_vectors(self, name: str, updates: list[models.PointVectors]) -> None:
        """Set these points' BM25 vectors; a point deleted meanwhile is skipped."""
        try:
            with self._serial:
                self._client.update_vectors(self._full(name), points=updates, wait=True)
        except (UnexpectedResponse, KeyError) as exc:
            # Qdrant writes every point it finds, then answers 404 for the first one it did not
            # (the local client raises a KeyError): a chunk deleted meanwhile needs no vector.
            if isinstance(exc, UnexpectedResponse) and exc.status_code != 404:
                raise
            self._load_meta(name, refresh=True)  # the 404 may also be the collection's

    def _formula(
        self, name: str, plan: SearchPlan, selector: models.Filter | None
    ) -> models.FormulaQuery:
        """The weighted fusion of the plan's arms, normalised by each arm's best score."""
        requests = [
            models.QueryRequest(query=a.query, using=a.using, filter=a.filter, limit=1)
            for a in _arms(plan, selector, 1)
        ]
        with self._call(name):
            best = self._client.query_batch_points(self._full(name), requests=requests)
        tops = [float(r.points[0].score) if r.points else None for r in best]
        best_sparse = tops[1] if len(tops) > 1 else None
        dense_factor, sparse_factor = weighted_coefficients(plan.dense_weight, tops[0], best_sparse)
        terms: list[models.Expression] = [models.MultExpression(mult=[dense_factor, "$score[0]"])]
        if plan.sparse is not None:
            terms.append(models.MultExpression(mult=[sparse_factor, "$score[1]"]))
        # A chunk that only one arm found scores 0 in the other one.
        return models.FormulaQuery(
            formula=models.SumExpression(sum=terms), defaults={"$score[0]": 0.0, "$score[1]": 0.0}
        )

    @contextlib.contextmanager
    def _refused(self, plan: SearchPlan) -> Iterator[None]:
        """A server's 400 for a sparse or hybrid query as an InvalidRequest naming the backend.

        Our arguments are checked before they are sent, so such a 400 means that the server
        lacks the feature (an older Qdrant).
        """
        try:
            yield
        except UnexpectedResponse as exc:
            if exc.status_code != 400 or plan.mode == "dense":
                raise
            what = f"fusion {plan.fusion!r}" if plan.mode == "hybrid" else "sparse vectors"
            raise InvalidRequest(
                f"the qdrant_server backend refused a {plan.mode} search ({what}): "
                f"{_server_error(exc)}. Sparse and hybrid search need Qdrant 1.10 or later, "
                "fusion 'dbsf' 1.11 and fusion 'weighted' 1.14.",
                param="mode" if plan.mode == "sparse" else "fusion",
            ) from None

    def _ensure_indexes(self, name: str) -> None:
        """Create the payload indexes the pipeline filters by (idempotent)."""
        full = self._full(name)
        with self._call(name):
            present = self._client.get_collection(full).payload_schema
        for key, schema in _INDEXES.items():
            if key in present:
                continue
            with self._call(name), warnings.catch_warnings():
                # The in-process client ignores payload indexes and says so on every call.
                warnings.filterwarnings("ignore", "Payload indexes have no effect")
                self._client.create_payload_index(full, key, field_schema=schema, wait=True)


def _meta_to_dict(meta: _Meta) -> dict[str, Any]:
    return {
        "format": _FORMAT,
        **provenance_to_dict(meta.provenance),
        "created_at": meta.created_at,
        "bm25": bm25_to_dict(meta.bm25),
    }


def _meta_from_dict(metadata: Mapping[str, Any] | None) -> _Meta | None:
    """The appliance's entry in a collection's metadata, or None if there is none."""
    raw = (metadata or {}).get(_META_KEY)
    if not isinstance(raw, Mapping):
        return None
    try:
        return _Meta(
            provenance_from_dict(raw), str(raw["created_at"]), bm25_from_dict(raw.get("bm25"))
        )
    except (KeyError, TypeError, ValueError):
        return None


def _no_named_vectors(why: str) -> InvalidRequest:
    """The 400 for a server (or client) that cannot add a vector to an existing collection."""
    return InvalidRequest(
        "the qdrant_server backend cannot add BM25 sparse vectors to an existing collection "
        f"({why}): that needs Qdrant and qdrant-client 1.18 or later. Upgrade the server, or "
        "create a new collection and re-index.",
        param="collection",
    )


def _vectors(config: Bm25Config | None, point: Point, dense: list[float]) -> models.VectorStruct:
    """The point's dense vector, and its BM25 vector under `config` if there is one."""
    if config is None:
        return dense
    sparse = document_vector(config, point.text_for_sparse)
    if sparse is None:
        return dense
    return {
        "": dense,
        SPARSE: models.SparseVector(indices=list(sparse.indices), values=list(sparse.values)),
    }


def _is_weighted(plan: SearchPlan) -> bool:
    return plan.mode == "hybrid" and plan.fusion == "weighted"


def _arms(plan: SearchPlan, selector: models.Filter | None, limit: int) -> list[models.Prefetch]:
    """The plan's queries (dense first), each with the filter and a limit."""
    arms = []
    if plan.dense is not None:
        arms.append(models.Prefetch(query=plan.dense, filter=selector, limit=limit))
    if plan.sparse is not None:
        terms = models.SparseVector(indices=plan.sparse.indices, values=plan.sparse.values)
        arms.append(models.Prefetch(query=terms, using=SPARSE, filter=selector, limit=limit))
    return arms


def _fusion(plan: SearchPlan, formula: models.FormulaQuery | None) -> models.Query:
    """The query fusing a hybrid plan's arms."""
    if plan.fusion == "rrf":
        # Qdrant's default k (search.RRF_K), which every server with RRF supports.
        return models.FusionQuery(fusion=models.Fusion.RRF)
    if plan.fusion == "dbsf":
        return models.FusionQuery(fusion=models.Fusion.DBSF)
    assert formula is not None
    return formula


def _server_error(exc: UnexpectedResponse) -> str:
    """The error message in a Qdrant error answer (its raw text if it has none)."""
    with contextlib.suppress(Exception):
        return str(exc.structured()["status"]["error"])
    return exc.content.decode(errors="replace")[:500]
