"""enable_sparse on the server adapter: a dense-only collection given BM25 vectors in place.

It adds the `bm25` sparse vector to the existing collection (Qdrant's "create named vector",
1.18 and later), sets every point's BM25 vector from its payload "text" in pages
(`update_vectors`, which leaves the dense vector alone), and records the BM25 config in the
metadata last: until then the collection stays dense-only for every replica, and a crash only
leaves points with unused BM25 vectors behind (running it again finishes the job). Meanwhile this
store's own upserts carry BM25 vectors (`upgrading`); other replicas re-read a dense-only
collection's metadata every few seconds (server_meta.DENSE_META_TTL_S), so they start writing
BM25 vectors and searching them soon after. Writes that other replicas make during the upgrade
may lack BM25 vectors: upgrade a collection while only this store writes to it.
"""

from __future__ import annotations

from collections.abc import Callable

from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

from rag_appliance.errors import CollectionNotFound, InvalidRequest
from rag_appliance.store.base import Bm25Config
from rag_appliance.store.bm25 import VECTOR as SPARSE
from rag_appliance.store.bm25 import document_vector
from rag_appliance.store.server_client import ServerClient
from rag_appliance.store.server_meta import Meta, metadata

# Points per scroll page and per update_vectors request.
PAGE = 256


def upgrade(
    conn: ServerClient,
    name: str,
    meta: Meta,
    bm25: Bm25Config,
    progress: Callable[[int], None] | None,
    upgrading: dict[str, Bm25Config],
) -> None:
    """Give the dense-only collection `name` (metadata `meta`) BM25 vectors under `bm25`; while
    it runs, `upgrading[name]` is `bm25` (see the module docstring)."""
    _create_sparse_vector(conn, name)
    upgrading[name] = bm25
    try:
        _fill_sparse(conn, name, bm25, progress)
        # Writes that were in flight when the upgrade started carry no BM25 vector.
        _fill_sparse(conn, name, bm25, None)
        upgraded = Meta(meta.provenance, meta.created_at, bm25)
        with conn.call(name):
            conn.client.update_collection(conn.full(name), metadata=metadata(upgraded))
        conn.cache.put(name, upgraded)
    finally:
        upgrading.pop(name, None)


def _create_sparse_vector(conn: ServerClient, name: str) -> None:
    """Add the `bm25` sparse vector to an existing collection (no-op when it is there)."""
    create = getattr(conn.client, "create_vector_name", None)
    if create is None:
        raise _no_named_vectors("this qdrant-client has no create_vector_name")
    config = models.SparseVectorNameConfig(
        sparse=models.SparseVectorConfig(modifier=models.Modifier.IDF)
    )
    try:
        with conn.call(name):
            create(conn.full(name), SPARSE, config, wait=True)
    except (UnexpectedResponse, CollectionNotFound) as exc:
        # A Qdrant before 1.18 has no such route: it answers 404 (or 405) for it.
        conn.meta(name, refresh=True)  # CollectionNotFound if it is really gone
        status = exc.status_code if isinstance(exc, UnexpectedResponse) else 404
        if status not in (404, 405):
            raise
        raise _no_named_vectors(f"the server answered {status}") from None


def _fill_sparse(
    conn: ServerClient, name: str, bm25: Bm25Config, progress: Callable[[int], None] | None
) -> None:
    """Set the BM25 vector of every point without one from its "text" (none without it)."""
    full = conn.full(name)
    # Points already done (by an earlier, interrupted run too) are skipped.
    todo = models.Filter(must_not=[models.HasVectorCondition(has_vector=SPARSE)])
    offset: models.ExtendedPointId | None = None
    while True:
        with conn.call(name):
            records, offset = conn.client.scroll(
                full,
                scroll_filter=todo,
                limit=PAGE,
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
            _update_vectors(conn, name, updates)
        if progress is not None and records:
            progress(len(records))
        if offset is None:
            return


def _update_vectors(conn: ServerClient, name: str, updates: list[models.PointVectors]) -> None:
    """Set these points' BM25 vectors; a point deleted meanwhile is skipped."""
    try:
        with conn.serial:
            conn.client.update_vectors(conn.full(name), points=updates, wait=True)
    except (UnexpectedResponse, KeyError) as exc:
        # Qdrant writes every point it finds, then answers 404 for the first one it did not
        # (the local client raises a KeyError): a chunk deleted meanwhile needs no vector.
        if isinstance(exc, UnexpectedResponse) and exc.status_code != 404:
            raise
        conn.meta(name, refresh=True)  # the 404 may also be the collection's


def _no_named_vectors(why: str) -> InvalidRequest:
    """The 400 for a server (or client) that cannot add a vector to an existing collection."""
    return InvalidRequest(
        "the qdrant_server backend cannot add BM25 sparse vectors to an existing collection "
        f"({why}): that needs Qdrant and qdrant-client 1.18 or later. Upgrade the server, or "
        "create a new collection and re-index.",
        param="collection",
    )
