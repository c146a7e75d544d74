"""enable_sparse on the embedded store: a dense-only collection's shard rebuilt with BM25 vectors.

A shard's vectors are fixed when it is created (qdrant-edge refuses to load a dense-only shard
with a sparse vector added: "config is incompatible with existing segments"), so the upgrade
builds a new shard beside the live one and swaps it in, the way an HNSW build does (edge_hnsw):

1. it waits for a running index build (no new one starts until it ends), then, under the
   collection lock, flushes the shard, copies its directory (the snapshot: ~0.3 s at 100k x 384
   points) and starts the journal: from then on every write to the live shard is also recorded,
   upserts with the BM25 vectors of their text (`EdgeCollection.upgrading`);
2. outside the lock, it creates the new shard with the `bm25` sparse vector and the snapshot's
   payload indexes and copies every point of the snapshot in pages: the dense vector and the
   payload as they are, plus the BM25 vector of the payload's "text" (none when a point has no
   string "text"); nothing is re-embedded. A copy of `hnsw_threshold` points or more is then
   optimized in the index build's niced child process, so the collection keeps its HNSW index;
3. it replays the journal onto the new shard, then under the lock the journal's tail, points
   collection.json at the new shard and the BM25 config (the commit point) and swaps it in.

Searches and writes go on against the old shard meanwhile; only sparse and hybrid searches are
refused until the swap, after which every point's BM25 vector is there at once. A crash at any
step leaves the old shard live and the collection dense-only: the store deletes the half-made
shards when it opens (edge_layout.scan), and enable_sparse can simply run again.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import qdrant_edge as qe

from rag_appliance.store import edge_config
from rag_appliance.store.base import Bm25Config
from rag_appliance.store.bm25 import VECTOR as SPARSE
from rag_appliance.store.bm25 import document_vector
from rag_appliance.store.edge_hnsw import IndexBuilder, dense_indexed, spawn_optimizer
from rag_appliance.store.edge_layout import EdgeCollection, new_shard_name
from rag_appliance.store.validation import not_found

log = logging.getLogger(__name__)

# Points per scroll page and per upsert into the new shard: each is one call that holds the GIL,
# so pages stay small enough not to stall the event loop (measured at 384 dimensions: a scroll
# ~2 ms, an upsert ~10 ms; the BM25 vectors in between, ~0.1 ms per 120-word text, one by one).
PAGE = 256
# Journal entries left when the upgrade takes the lock for the final replay and swap.
_SWAP_TAIL = 16


def upgrade(
    c: EdgeCollection,
    index: IndexBuilder,
    config: Bm25Config,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Give the dense-only collection `c` BM25 vectors in place (see the module docstring)."""
    snapshot_dir = c.dir / new_shard_name()
    target_name = new_shard_name()
    target_dir = c.dir / target_name
    sparse_config = edge_config.config(index.spec(c, sparse=True))
    snapshot: qe.EdgeShard | None = None
    target: qe.EdgeShard | None = None
    swapped = False
    try:
        started = time.monotonic()
        _snapshot(c, index, config, snapshot_dir)
        snapshot = qe.EdgeShard.load(str(snapshot_dir))
        target = qe.EdgeShard.create(str(target_dir), sparse_config)
        copied = _copy(c, snapshot, target, config, progress)
        snapshot.close()
        snapshot = None
        shutil.rmtree(snapshot_dir, ignore_errors=True)
        copy_done = time.monotonic()
        optimized = bool(index.threshold) and copied >= index.threshold
        if optimized:
            target.flush()
            target.close()
            target = None
            _optimize(c, target_dir, index.spec(c, copied, sparse=True))
            target = qe.EdgeShard.load(str(target_dir), sparse_config)
        # Counted before the replay, as after an index build (edge_hnsw.dense_indexed).
        indexed = dense_indexed(target) if optimized else 0
        journal = c.journal
        assert journal is not None
        for _ in range(max(0, len(journal) - _SWAP_TAIL)):
            target.update(journal.popleft())
        with c.lock:
            _check_open(c)
            while journal:
                target.update(journal.popleft())
            target.flush()
            old, old_name, old_indexed = c.shard, c.shard_name, c.indexed_points
            assert old is not None  # loaded by _snapshot; only closing unloads it
            c.shard_name, c.bm25, c.indexed_points = target_name, config, indexed
            try:
                c.write_meta()  # the commit point
            except BaseException:
                c.shard_name, c.bm25, c.indexed_points = old_name, None, old_indexed
                raise
            c.shard, target, swapped = target, None, True
            c.journal = None
            c.upgrading = None
            c.unflushed = 0
            c.next_build_at = 0
            index.maybe_start(c, c.shard)
        old.close()
        shutil.rmtree(c.dir / old_name, ignore_errors=True)
        log.info(
            "collection %s: BM25 vectors added to %d points (copy %.1f s, total %.1f s)",
            c.name,
            copied,
            copy_done - started,
            time.monotonic() - started,
        )
    finally:
        for shard in (snapshot, target):
            if shard is not None:
                shard.close()
        shutil.rmtree(snapshot_dir, ignore_errors=True)
        if not swapped:
            shutil.rmtree(target_dir, ignore_errors=True)
            with c.lock:
                c.journal = None
                c.upgrading = None
                c.proc = None
                if c.shard is not None and not c.closed:
                    index.maybe_start(c, c.shard)


def _check_open(c: EdgeCollection) -> None:
    """CollectionNotFound once the collection was deleted (or the store closed) meanwhile."""
    if c.closed:
        raise not_found(c.name)


def _snapshot(c: EdgeCollection, index: IndexBuilder, config: Bm25Config, to: Path) -> None:
    """Wait out an index build, then copy the flushed shard to `to` and start the journal."""
    while True:
        index.wait(c)
        with c.lock:
            _check_open(c)
            shard = index.open(c)  # loading it may start a build: then wait for that one
            if c.builder is not None:
                continue
            c.upgrading = config  # from now on no build starts
            shard.flush()
            c.unflushed = 0
            shutil.copytree(c.shard_dir, to)
            c.journal = deque()
            return


def _copy(
    c: EdgeCollection,
    source: qe.EdgeShard,
    target: qe.EdgeShard,
    config: Bm25Config,
    progress: Callable[[int], None] | None,
) -> int:
    """Copy every point of `source` into `target` with its BM25 vector; the number copied."""
    for key, schema in source.info().payload_schema.items():
        target.update(qe.UpdateOperation.create_field_index(key, schema.data_type))
    copied = 0
    offset: qe.PointId | None = None
    while True:
        records, offset = source.scroll(
            qe.ScrollRequest(offset=offset, limit=PAGE, with_payload=True, with_vector=True)
        )
        if records:
            target.update(qe.UpdateOperation.upsert_points([_point(r, config) for r in records]))
            copied += len(records)
            if progress is not None:
                progress(len(records))
        if offset is None:
            return copied
        _check_open(c)


def _point(record: qe.Record, config: Bm25Config) -> qe.Point:
    """The record with its dense vector, its payload and the BM25 vector of its "text"."""
    # A dense-only shard returns its one unnamed vector as a plain list.
    dense = cast(list[float], record.vector)
    payload = record.payload or {}
    text = payload.get("text")
    sparse = document_vector(config, text) if isinstance(text, str) else None
    vector: qe.Vector = dense if sparse is None else {"": dense, SPARSE: sparse}
    return qe.Point(record.id, vector, payload)


def _optimize(c: EdgeCollection, shard_dir: Path, spec: dict[str, Any]) -> None:
    """Build the HNSW index of the closed shard at `shard_dir` in the niced child process,
    with the config `spec` chooses for its size (edge_config)."""
    with c.lock:
        _check_open(c)
        c.proc = proc = spawn_optimizer(shard_dir, spec)  # killed by delete_collection and close
    _, err = proc.communicate()
    with c.lock:
        c.proc = None
    _check_open(c)
    if proc.returncode != 0:
        raise RuntimeError(
            f"building the HNSW index of the upgraded collection {c.name!r} failed: "
            + err.decode(errors="replace").strip()[-2000:]
        )
