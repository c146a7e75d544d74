"""The Milvus store: a Milvus server or cluster (store.url) or Milvus Lite in a local file.

This module is the VectorStore; the parts it runs on each have their module: milvus_client (the
client, names, metadata, the calls), milvus_rows (a point as a row), milvus_schema (fields and
indexes), milvus_filters (our Filter as a Milvus expression), milvus_search (the searches and
the fusions) and milvus_upgrade (set_payload and enable_sparse, which read rows back).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pymilvus import MilvusClient

from rag_appliance.errors import CollectionNotFound, Conflict, InvalidRequest
from rag_appliance.store import milvus_aliases, milvus_schema, milvus_search, milvus_upgrade
from rag_appliance.store.aliases import check_not_alias
from rag_appliance.store.base import (
    DEFAULT_BM25,
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
from rag_appliance.store.milvus_client import (
    DEFAULT_PREFIX,
    MAX_LIMIT,
    MilvusConn,
    bm25_of,
    connect_lite,
    connect_url,
    lite_writes,
    release_lite,
)
from rag_appliance.store.milvus_filters import EVERYTHING, quote, to_expr, touches_mirrors
from rag_appliance.store.milvus_rows import (
    ID,
    IRREGULAR,
    PAYLOAD,
    VECTOR,
    payload_fields,
    sparse_fields,
    stored_payload,
)
from rag_appliance.store.provenance import provenance_conflict, utc_now
from rag_appliance.store.search import plan as plan_search
from rag_appliance.store.server_meta import Meta
from rag_appliance.store.validation import (
    check_collection_name,
    check_limit,
    check_payload,
    check_provenance,
    matrix,
    point_id,
    scroll_offset,
)

if TYPE_CHECKING:
    from rag_appliance.settings import Settings

# Rows per upsert request: a few MB, well under gRPC's message limit.
UPSERT_BATCH = 1000
# Where Milvus Lite keeps its data without store.url (a folder, despite the name).
LITE_FILE = Path("milvus") / "milvus.db"


def from_settings(settings: Settings) -> VectorStore:
    """The store the settings name (the registry's entry for backend `milvus`)."""
    store = settings.store
    if store.url:
        return MilvusStore.connect(store.url, store.api_key, timeout=store.timeout_s)
    return MilvusStore.lite(Path(settings.data_dir) / LITE_FILE)


class MilvusStore:
    """VectorStore on Milvus; collection `name` is `prefix + escaped name` there."""

    def __init__(
        self,
        client: MilvusClient,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float | None = None,
        lite_path: Path | None = None,
    ) -> None:
        """Use `client`; `prefix` namespaces this appliance's collections on a shared server;
        `lite_path`: the Milvus Lite file whose client this is (released by close)."""
        self._client = client
        writes = None if lite_path is None else lite_writes(lite_path)
        self._conn = MilvusConn(client, prefix, timeout=timeout, writes=writes)
        self._lite_path = lite_path
        # Collections this store is giving BM25 vectors: its upserts to them carry them.
        self._upgrading: dict[str, Bm25Config] = {}

    @classmethod
    def connect(
        cls, url: str, token: str | None = None, prefix: str = DEFAULT_PREFIX, *, timeout: float
    ) -> MilvusStore:
        """A store on the Milvus server at `url` (`token`: "user:password" or an API key)."""
        return cls(connect_url(url, token, timeout), prefix=prefix, timeout=timeout)

    @classmethod
    def lite(cls, path: Path, prefix: str = DEFAULT_PREFIX) -> MilvusStore:
        """A store on Milvus Lite in `path` (a `.db` folder), started in this process."""
        client = connect_lite(path)
        try:
            return cls(client, prefix=prefix, lite_path=path)
        except BaseException:
            client.close()
            release_lite(path)
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
        with self._conn.writes:
            check_not_alias(name, milvus_aliases.read(self._conn))
            milvus_schema.create(self._conn, name, provenance, Meta(provenance, utc_now(), bm25))
            # Only the appliance's collections (Conflict otherwise), and before they are loaded:
            # a server loads a collection only once its vectors have indexes.
            stored = self._conn.meta(name, refresh=True, load=False)
            if stored.provenance != provenance:
                raise provenance_conflict(name, stored.provenance, provenance)
            milvus_schema.ensure_indexes(self._conn, name)
            self._conn.ensure_loaded(name, again=True)
        return self.get_collection(name)

    def get_collection(self, name: str) -> CollectionInfo:
        """The collection's provenance and size."""
        meta = self._conn.meta(name)
        return CollectionInfo(name, meta.provenance, self.count(name), meta.created_at, meta.bm25)

    def list_collections(self) -> list[CollectionInfo]:
        """Every appliance collection under this store's prefix, by name."""
        names = []
        for full in self._client.list_collections(timeout=self._conn.timeout):
            name = self._conn.name_of(full)
            if name is not None:
                names.append(name)
        infos = []
        for name in sorted(names):
            with contextlib.suppress(InvalidRequest, CollectionNotFound, Conflict):
                infos.append(self.get_collection(name))
        return infos

    def delete_collection(self, name: str) -> None:
        """Delete the collection."""
        self._conn.meta(name, refresh=True)
        milvus_aliases.drop_aliases_of(self._conn, name)
        with self._conn.writes, self._conn.call(name):
            self._client.drop_collection(self._conn.full(name), timeout=self._conn.timeout)
        self._conn.forget(name)

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        """Insert or replace points by id (Conflict if a vector has the wrong dimension)."""
        meta = self._conn.meta(name)
        if not points:
            return
        vectors = matrix(points, meta.provenance.dimension, name).tolist()
        config = bm25_of(meta, self._upgrading, name)
        rows: dict[str, dict[str, Any]] = {}
        for p, v in zip(points, vectors, strict=True):
            pid = point_id(p.id)
            # The last of a repeated id wins, as on Qdrant (Milvus may refuse the repeat).
            rows[pid] = {
                ID: pid,
                VECTOR: v,
                **payload_fields(check_payload(p.payload)),
                **sparse_fields(config, p.text_for_sparse),
            }
        batch = list(rows.values())
        with self._conn.writes:
            for start in range(0, len(batch), UPSERT_BATCH):
                self._conn.upsert(name, batch[start : start + UPSERT_BATCH])

    def set_payload(self, name: str, flt: Filter, payload: dict[str, Any]) -> None:
        """Merge `payload`'s keys into the payload of every point matching `flt`."""
        check_payload(payload)
        self._conn.meta(name)
        milvus_upgrade.set_payload(self._conn, name, self._expr(name, flt), payload)

    def delete(self, name: str, flt: Filter) -> None:
        """Delete every point matching `flt`."""
        self._conn.meta(name)
        expr = self._expr(name, flt) or EVERYTHING
        with self._conn.writes:
            self._conn.delete(name, expr)

    def count(self, name: str, flt: Filter | None = None) -> int:
        """The exact number of points matching `flt` (all points without one)."""
        self._conn.meta(name)
        return self._conn.count(name, self._expr(name, flt))

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
        return milvus_search.search(self._conn, name, plan, self._expr(name, flt))

    def scroll(
        self,
        name: str,
        flt: Filter | None,
        limit: int,
        offset: str | None = None,
        *,
        with_vectors: bool = False,
    ) -> tuple[list[Record], str | None]:
        """Up to `limit` points matching `flt` in id order from `offset`, and the next offset;
        `with_vectors` adds each point's dense vector."""
        check_limit(limit, "limit")
        start = scroll_offset(offset)
        self._conn.meta(name)
        expr = self._expr(name, flt)
        if start is not None:
            since = f"{ID} >= {quote(start)}"
            expr = f"({expr}) and {since}" if expr else since
        # One row more than asked for: its id is the next offset (within Milvus' window).
        limit = min(limit, MAX_LIMIT - 1)
        fields = [ID, PAYLOAD, VECTOR] if with_vectors else [ID, PAYLOAD]
        rows = self._conn.page(name, expr, fields, None, limit + 1)
        page = [
            Record(
                str(r[ID]),
                stored_payload(r),
                np.asarray(r[VECTOR], dtype=np.float32) if with_vectors else None,
            )
            for r in rows[:limit]
        ]
        return page, str(rows[limit][ID]) if len(rows) > limit else None

    def enable_sparse(
        self,
        name: str,
        bm25: Bm25Config = DEFAULT_BM25,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> CollectionInfo:
        """Give a dense-only collection BM25 vectors from its points' payload "text", in place
        (no-op when it has them); see milvus_upgrade."""
        check_bm25(bm25)
        meta = self._conn.meta(name, refresh=True)
        if meta.bm25 is None:
            milvus_upgrade.enable_sparse(self._conn, name, meta, bm25, progress, self._upgrading)
        return self.get_collection(name)

    def aliases(self) -> dict[str, str]:
        """Every alias and the collection it points to (milvus_aliases)."""
        return milvus_aliases.read(self._conn)

    def set_alias(self, alias: str, collection: str) -> None:
        """Create or atomically repoint `alias`."""
        milvus_aliases.set_alias(self._conn, alias, collection)

    def delete_alias(self, alias: str) -> None:
        """Drop `alias` (its collection stays); 404 when there is none."""
        milvus_aliases.delete_alias(self._conn, alias)

    def close(self) -> None:
        """Close the client; stop Milvus Lite when no other store in this process uses it."""
        self._client.close()
        if self._lite_path is not None:
            release_lite(self._lite_path)
            self._lite_path = None  # a second close releases nothing

    # -- internals ---------------------------------------------------------------------------

    def _expr(self, name: str, flt: Filter | None) -> str:
        """`flt` as an expression; the JSON fallback of mirrored keys only when some row of the
        collection needs it (one cheap scalar query, see milvus_filters)."""
        irregular = touches_mirrors(flt) and bool(
            self._conn.query(name, f"{IRREGULAR} == true", [ID], limit=1)
        )
        return to_expr(flt, irregular)
