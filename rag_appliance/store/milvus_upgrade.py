"""Writes that read rows back first on the Milvus adapter: set_payload (a merge into each
matching row's payload) and enable_sparse (BM25 vectors for a dense-only collection, in place).

Milvus has no "set these payload keys" operation: each page of matching rows (in id order) is
read and upserted again. From Milvus 2.6 (and on Milvus Lite) the upsert carries only the
changed fields (`partial_update`); an older server gets whole rows back, vectors included.
Under the store's write lock, so this store's other writes cannot interleave; a write another
replica makes to the same rows meanwhile may be overwritten. Each page's upsert is one write
(Milvus Lite logs it as one batch), so a set_payload of up to PAGE (1000) points is all-or-nothing
across a crash; a larger one may be cut between pages.

enable_sparse needs no schema change: every collection has its sparse fields from the start
(milvus_rows). It sets the BM25 vector of every point that has none from its payload "text",
page by page (points done are skipped, so an interrupted run resumes), goes over the points
written meanwhile once more, and writes the BM25 config into the collection properties last:
until then the collection stays dense-only. Meanwhile this store's upserts carry BM25 vectors
(`upgrading`); other replicas re-read a dense-only collection's metadata every few seconds
(server_meta.DENSE_META_TTL_S), so upgrade a collection while only this store writes to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rag_appliance.store.base import Bm25Config
from rag_appliance.store.milvus_client import MilvusConn
from rag_appliance.store.milvus_rows import (
    HAS_TERMS,
    ID,
    IRREGULAR,
    MIRRORS,
    PAYLOAD,
    SPARSE,
    TERMS,
    VECTOR,
    merged_payload_fields,
    sparse_fields,
    stored_payload,
)
from rag_appliance.store.server_meta import Meta

# Rows per page read and upserted again: set_payload's, and enable_sparse's (smaller, since
# each of its pages also computes BM25 vectors and reports progress).
PAGE = 1000
UPGRADE_PAGE = 256
# Every field: what an upsert needs when the server has no partial update.
ALL_FIELDS = [ID, VECTOR, PAYLOAD, IRREGULAR, *MIRRORS, SPARSE, TERMS, HAS_TERMS]


def set_payload(conn: MilvusConn, name: str, expr: str, update: Mapping[str, Any]) -> None:
    """Merge `update`'s keys into the payload of every row matching `expr`."""
    fields = [ID, PAYLOAD] if conn.partial_updates else ALL_FIELDS
    after: str | None = None
    with conn.writes:
        while True:
            rows = conn.page(name, expr, fields, after, PAGE)
            changed = [
                _row(conn, r, merged_payload_fields(r.get(PAYLOAD) or {}, update)) for r in rows
            ]
            conn.upsert(name, changed, partial=conn.partial_updates)
            if len(rows) < PAGE:
                return
            after = str(rows[-1][ID])


def enable_sparse(
    conn: MilvusConn,
    name: str,
    meta: Meta,
    bm25: Bm25Config,
    progress: Callable[[int], None] | None,
    upgrading: dict[str, Bm25Config],
) -> None:
    """Give the dense-only collection `name` (metadata `meta`) BM25 vectors under `bm25`; while
    it runs, `upgrading[name]` is `bm25` (see the module docstring)."""
    upgrading[name] = bm25
    try:
        _fill_sparse(conn, name, bm25, progress)
        # Writes that were in flight when the upgrade started carry no BM25 vector.
        _fill_sparse(conn, name, bm25, None)
        conn.put_meta(name, Meta(meta.provenance, meta.created_at, bm25))
    finally:
        upgrading.pop(name, None)


def _fill_sparse(
    conn: MilvusConn, name: str, bm25: Bm25Config, progress: Callable[[int], None] | None
) -> None:
    """Set the BM25 vector of every point without one from its "text" (none without it)."""
    fields = [ID, PAYLOAD] if conn.partial_updates else ALL_FIELDS
    after: str | None = None
    while True:
        with conn.writes:  # read and write back with no write of this store in between
            rows = conn.page(name, f"{HAS_TERMS} == false", fields, after, UPGRADE_PAGE)
            changed = []
            for r in rows:
                text = stored_payload(r).get("text")
                sparse = sparse_fields(bm25, text if isinstance(text, str) else None)
                if sparse[HAS_TERMS]:
                    changed.append(_row(conn, r, sparse))
            conn.upsert(name, changed, partial=conn.partial_updates)
        if progress is not None and rows:
            progress(len(rows))  # outside the lock: it may write (the contract's test does)
        if len(rows) < UPGRADE_PAGE:
            return
        after = str(rows[-1][ID])


def _row(conn: MilvusConn, stored: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The row to upsert: the id and `changes`, or the whole stored row with them."""
    if conn.partial_updates:
        return {ID: stored[ID], **changes}
    return {**{f: stored[f] for f in ALL_FIELDS}, **changes}
