"""The scale-out store: a Qdrant server or cluster through qdrant-client.

This module is the VectorStore; the parts it runs on each have their module: server_client (the
client, the prefix, the local mode's lock, REST 404s), server_meta (provenance in the
collection metadata), server_search (the queries) and server_upgrade (enable_sparse in place).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from qdrant_client import QdrantClient, models

from rag_appliance.errors import CollectionNotFound, Conflict, InvalidRequest
from rag_appliance.store import server_upgrade
from rag_appliance.store.aliases import alias_not_found, check_alias, check_not_alias
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
from rag_appliance.store.provenance import provenance_conflict, utc_now
from rag_appliance.store.qdrant_filters import QdrantDialect, to_qdrant
from rag_appliance.store.search import plan as plan_search
from rag_appliance.store.server_client import ServerClient
from rag_appliance.store.server_meta import Meta, metadata
from rag_appliance.store.server_search import search as run_query
from rag_appliance.store.validation import (
    check_collection_name,
    check_limit,
    check_payload,
    check_provenance,
    dense_vector,
    matrix,
    point_id,
    scroll_offset,
)

if TYPE_CHECKING:
    from rag_appliance.settings import Settings

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


class QdrantServerStore:
    """VectorStore on a Qdrant server; collection `name` is `prefix + name` on the server."""

    def __init__(self, client: QdrantClient, *, prefix: str = "") -> None:
        """Use `client`; `prefix` namespaces this appliance's collections on a shared server."""
        if prefix:
            check_collection_name(prefix)
        self._client = client
        self._prefix = prefix
        self._conn = ServerClient(client, prefix)
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
        full = self._conn.full(name)
        meta = Meta(provenance, utc_now(), bm25)
        # The engine applies IDF; the points' vectors carry BM25's term frequencies (bm25.py).
        sparse = {SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)}
        with self._conn.serial:
            # First: the server resolves an alias's name to its collection, as if it existed.
            check_not_alias(name, self.aliases())
            if not self._client.collection_exists(full):
                try:
                    self._client.create_collection(
                        full,
                        vectors_config=models.VectorParams(
                            size=provenance.dimension, distance=models.Distance.COSINE
                        ),
                        sparse_vectors_config=sparse if bm25 is not None else None,
                        metadata=metadata(meta),
                    )
                except Exception:
                    # Another replica may have created it meanwhile: then compare below.
                    if not self._client.collection_exists(full):
                        raise
        stored = self._conn.meta(name, refresh=True)
        if stored.provenance != provenance:
            raise provenance_conflict(name, stored.provenance, provenance)
        self._ensure_indexes(name)
        return self.get_collection(name)

    def get_collection(self, name: str) -> CollectionInfo:
        """The collection's provenance and size."""
        meta = self._conn.meta(name)
        return CollectionInfo(name, meta.provenance, self.count(name), meta.created_at, meta.bm25)

    def list_collections(self) -> list[CollectionInfo]:
        """Every appliance collection under this store's prefix, by name."""
        with self._conn.serial:
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
        self._conn.meta(name, refresh=True)
        with self._conn.call(name):
            self._client.delete_collection(self._conn.full(name))
        self._conn.cache.drop(name)

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        """Insert or replace points by id (Conflict if a vector has the wrong dimension)."""
        meta = self._conn.meta(name)
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
        with self._conn.call(name):
            self._client.upsert(self._conn.full(name), points=batch, wait=True)

    def set_payload(self, name: str, flt: Filter, payload: dict[str, Any]) -> None:
        """Merge `payload`'s keys into the payload of every point matching `flt`."""
        check_payload(payload)
        selector = models.FilterSelector(filter=to_qdrant(flt, SERVER_FILTERS) or models.Filter())
        self._conn.meta(name)
        with self._conn.call(name):
            self._client.set_payload(self._conn.full(name), payload, points=selector, wait=True)

    def delete(self, name: str, flt: Filter) -> None:
        """Delete every point matching `flt`."""
        selector = models.FilterSelector(filter=to_qdrant(flt, SERVER_FILTERS) or models.Filter())
        self._conn.meta(name)
        with self._conn.call(name):
            self._client.delete(self._conn.full(name), points_selector=selector, wait=True)

    def count(self, name: str, flt: Filter | None = None) -> int:
        """The exact number of points matching `flt` (all points without one)."""
        query_filter = to_qdrant(flt, SERVER_FILTERS)
        self._conn.meta(name)
        with self._conn.call(name):
            result = self._client.count(
                self._conn.full(name), count_filter=query_filter, exact=True
            )
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
        meta = self._conn.meta(name)
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
        return run_query(self._conn, name, plan, to_qdrant(flt, SERVER_FILTERS))

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
        start = scroll_offset(offset)
        query_filter = to_qdrant(flt, SERVER_FILTERS)
        self._conn.meta(name)
        with self._conn.call(name):
            records, next_id = self._client.scroll(
                self._conn.full(name),
                scroll_filter=query_filter,
                limit=limit,
                offset=start,
                with_payload=True,
                with_vectors=with_vectors,
            )
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
        (no-op when it has them); see server_upgrade."""
        check_bm25(bm25)
        meta = self._conn.meta(name, refresh=True)
        if meta.bm25 is None:
            server_upgrade.upgrade(self._conn, name, meta, bm25, progress, self._upgrading)
        return self.get_collection(name)

    def aliases(self) -> dict[str, str]:
        """Every alias under this store's prefix and the collection it points to."""
        with self._conn.serial:
            listed = self._client.get_aliases().aliases
        n = len(self._prefix)
        return {
            a.alias_name[n:]: a.collection_name[n:]
            for a in listed
            if a.alias_name.startswith(self._prefix) and a.collection_name.startswith(self._prefix)
        }

    def set_alias(self, alias: str, collection: str) -> None:
        """Create or repoint `alias`: one update_collection_aliases call, atomic on the server."""
        with self._conn.serial:
            described = self._client.get_collections().collections
        names = {d.name[len(self._prefix) :] for d in described if d.name.startswith(self._prefix)}
        check_alias(alias, collection, names)
        full = self._conn.full(alias)
        create = models.CreateAlias(collection_name=self._conn.full(collection), alias_name=full)
        ops: list[models.AliasOperations] = [models.CreateAliasOperation(create_alias=create)]
        if alias in self.aliases():  # delete and create in one request: the documented switch
            drop = models.DeleteAlias(alias_name=full)
            ops.insert(0, models.DeleteAliasOperation(delete_alias=drop))
        with self._conn.serial:
            self._client.update_collection_aliases(change_aliases_operations=ops)

    def delete_alias(self, alias: str) -> None:
        """Drop `alias` (its collection stays); 404 when there is none."""
        if alias not in self.aliases():
            raise alias_not_found(alias)
        drop = models.DeleteAlias(alias_name=self._conn.full(alias))
        with self._conn.serial:
            self._client.update_collection_aliases(
                change_aliases_operations=[models.DeleteAliasOperation(delete_alias=drop)]
            )

    def close(self) -> None:
        """Close the client's connections."""
        with self._conn.serial:
            self._client.close()

    # -- internals ---------------------------------------------------------------------------

    def _ensure_indexes(self, name: str) -> None:
        """Create the payload indexes the pipeline filters by (idempotent)."""
        full = self._conn.full(name)
        with self._conn.call(name):
            present = self._client.get_collection(full).payload_schema
        for key, schema in _INDEXES.items():
            if key in present:
                continue
            with self._conn.call(name), warnings.catch_warnings():
                # The in-process client ignores payload indexes and says so on every call.
                warnings.filterwarnings("ignore", "Payload indexes have no effect")
                self._client.create_payload_index(full, key, field_schema=schema, wait=True)


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
