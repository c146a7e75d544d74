"""The embedded store's HNSW index builds: in a child process, off the GIL, swapped in live.

qdrant-edge has no background optimizer, and its Python calls hold the GIL for their whole
duration (measured: `optimize()` over 30k x 384 points froze every other Python thread for
7.9 s), so building the index in-process, even on a worker thread, would stall the event loop
for minutes on large collections. Instead, once a collection holds `threshold` points outside
HNSW segments, a builder thread:

1. flushes the shard and copies its directory under the collection lock (a consistent
   snapshot; the collection waits for the copy: 0.3 s at 100k x 384 points), and from then on
   the store records every write to the live shard in the collection's journal;
2. runs `optimize()` on the copy in a child process at nice 10, so neither the GIL nor the
   serving cores are taken from the server (measured at 100k x 384: 145 s of building, during
   which other threads never waited more than 0.2 s); searches stay exact meanwhile;
3. loads the optimized copy, replays the journal onto it, then under the lock replays the tail
   and points `collection.json` at it (an atomic os.replace) and deletes the old directory.

A crash at any step leaves one complete live shard (see edge_layout). The optimizer's
`indexing_threshold` is set to the same number of points (Qdrant counts it in KB of vectors), so
Qdrant indexes the segments that reached it and leaves smaller ones exact (~1 ms at 20k x 384).
`threshold=0` disables HNSW, as a zero indexing threshold does in Qdrant. The child loads the
copy with the config edge_config chooses for the collection's size at the snapshot (HNSW m and
ef_construct, int8 quantization past the threshold), so the optimizer builds with it and
rewrites segments built with another; live shards are opened keeping what the build chose.

Sparse (BM25) vectors travel with their points through every step: the copy holds them, the
optimizer rebuilds their inverted index with the segments, and the journal replays upserts with
both vectors. Qdrant counts sparse vectors as indexed wherever they are (and deleted ones until
their segment is rewritten), so for a collection with BM25 the dense vectors in HNSW are counted
on each newly built shard (see `dense_indexed`) and kept in collection.json.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from rag_appliance import heap
from rag_appliance.store import bm25, edge_config
from rag_appliance.store.edge_config import EdgeTuning
from rag_appliance.store.edge_layout import EdgeCollection, new_shard_name

log = logging.getLogger(__name__)

# Journal entries left when the builder takes the lock for the final replay and swap.
_SWAP_TAIL = 16
# While an ingest call writes to a collection, a build waits until this many thresholds of
# points are outside HNSW (so a stream of concurrent writers cannot put it off forever).
HELD_BUILD_FACTOR = 5

# Run by `python -c` in the index-build child: it imports only qdrant_edge (and edge_config, by
# its file path), so it starts fast and does not depend on how this package is installed.
_BUILD_SCRIPT = """
import ctypes, importlib.util, json, os, sys
try:
    ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG=SIGKILL: do not outlive the builder
except Exception:
    pass
if os.getppid() != int(sys.argv[2]):
    sys.exit(3)
os.nice(10)
import qdrant_edge
config = None
if len(sys.argv) > 3:  # the build's config: edge_config.spec's JSON, made by edge_config
    found = importlib.util.spec_from_file_location("edge_config", sys.argv[4])
    edge_config = sys.modules["edge_config"] = importlib.util.module_from_spec(found)
    found.loader.exec_module(edge_config)
    config = edge_config.config(json.loads(sys.argv[3]))
shard = qdrant_edge.EdgeShard.load(sys.argv[1], config)
shard.optimize()
shard.flush()
shard.close()
"""


def spawn_optimizer(shard_dir: Path, spec: dict[str, Any] | None = None) -> subprocess.Popen[bytes]:
    """The niced child process that runs optimize() on the (closed) shard at `shard_dir`,
    loaded with the config `spec` describes (edge_config.spec) if one is given."""
    args = [sys.executable, "-c", _BUILD_SCRIPT, str(shard_dir), str(os.getpid())]
    if spec is not None:
        args += [json.dumps(spec), edge_config.__file__]
    return subprocess.Popen(
        args,
        # The build's large temporary blocks go back to the OS when freed, not kept as its peak.
        env={**os.environ, **heap.child_env()},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def dense_indexed(shard: qe.EdgeShard) -> int:
    """Dense vectors in HNSW segments of a shard with BM25 vectors, just after it was built.

    Qdrant's indexed count adds every stored sparse vector to the dense ones in HNSW segments;
    the points with a sparse vector are counted exactly (empty ones are never stored), and right
    after optimize() no deleted point is left in a rewritten segment to inflate the total.
    """
    with_sparse = shard.count(
        qe.CountRequest(exact=True, filter=qe.Filter(must=[qe.HasVectorCondition(bm25.VECTOR)]))
    )
    return max(0, shard.info().indexed_vectors_count - with_sparse)


class IndexBuilder:
    """Starts, runs and waits for the HNSW builds of one store's collections."""

    def __init__(self, threshold: int, tuning: EdgeTuning | None = None) -> None:
        """Build once `threshold` points are outside HNSW segments (0: never), with the
        size-dependent config of `tuning` (edge_config)."""
        if threshold < 0:
            raise ValueError("hnsw_threshold must be >= 0")
        self.threshold = threshold
        self.tuning = tuning or EdgeTuning()
        self._writers_lock = threading.Lock()

    def spec(
        self, c: EdgeCollection, points: int | None = None, *, sparse: bool | None = None
    ) -> dict[str, Any]:
        """The collection's shard config as JSON: for a build at `points`, or (None) to open
        the shard as built; `sparse` overrides whether it has BM25 vectors."""
        has_sparse = c.bm25 is not None if sparse is None else sparse
        return self.tuning.spec(c.provenance.dimension, self.threshold, has_sparse, points)

    def config(self, c: EdgeCollection) -> qe.EdgeConfig:
        """The config the collection's shards are opened with (a build's choices kept)."""
        return edge_config.config(self.spec(c))

    @staticmethod
    def indexed(c: EdgeCollection, shard: qe.EdgeShard) -> int:
        """How many of the collection's dense vectors are in HNSW segments (lock held)."""
        if c.bm25 is None:
            return shard.info().indexed_vectors_count
        # Counted on the shard when it was built: the shard's own count includes sparse vectors.
        return c.indexed_points

    def open(self, c: EdgeCollection) -> qe.EdgeShard:
        """The collection's live shard, loaded on first use (collection lock held, not closed)."""
        if c.shard is None:
            c.shard = qe.EdgeShard.load(str(c.shard_dir), self.config(c))
            self.maybe_start(c, c.shard)
        return c.shard

    def maybe_start(self, c: EdgeCollection, shard: qe.EdgeShard) -> None:
        """Start a build if enough points are outside HNSW (collection lock held)."""
        # Not during enable_sparse: it owns the journal, and its new shard gets its own build.
        if self.threshold == 0 or c.builder is not None or c.closed or c.upgrading is not None:
            return
        points = shard.info().points_count
        unindexed = points - self.indexed(c, shard)
        if c.writers and unindexed < HELD_BUILD_FACTOR * self.threshold:
            return
        if unindexed >= self.threshold and points >= c.next_build_at:
            c.builder = threading.Thread(
                target=self._build, args=(c,), name=f"hnsw-{c.name}", daemon=True
            )
            c.builder.start()

    def hold(self, c: EdgeCollection) -> Callable[[], None]:
        """Hold builds of the collection while an ingest call writes to it; the release.

        A build started mid-write copies a shard that is still growing, journals every later
        write in memory and is outdated when it ends, so a large document would cost several
        builds, each overlapping the write, instead of one after it (docs/security.md, upload
        memory). Searches stay exact meanwhile. Holding never blocks (no collection lock);
        the release may (it can start the build).
        """
        with self._writers_lock:
            c.writers += 1
        released = False

        def release() -> None:
            nonlocal released
            with self._writers_lock:
                if released:
                    return
                released = True
                c.writers -= 1
                if c.writers:
                    return
            with c.lock:
                if c.shard is not None and not c.closed:
                    self.maybe_start(c, c.shard)

        return release

    @staticmethod
    def wait(c: EdgeCollection, timeout: float | None = None) -> bool:
        """Wait until no build runs for the collection; False if one still runs."""
        deadline = None if timeout is None else time.monotonic() + timeout
        # A build that ends may start the next one (for points written meanwhile): wait for all.
        while (builder := c.builder) is not None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            builder.join(remaining)
        return True

    def _build(self, c: EdgeCollection) -> None:
        """Build HNSW on a copy of the shard in a child process, then swap it in (a thread)."""
        build_name = new_shard_name()
        build_dir = c.dir / build_name
        new: qe.EdgeShard | None = None
        swapped = False
        try:
            started = time.monotonic()
            with c.lock:
                if c.closed or c.shard is None:
                    return
                c.shard.flush()
                c.unflushed = 0
                indexed_before = self.indexed(c, c.shard)
                # HNSW parameters and quantization for the size this build indexes.
                spec = self.spec(c, c.shard.info().points_count)
                shutil.copytree(c.shard_dir, build_dir)
                c.journal = deque()
                c.proc = proc = spawn_optimizer(build_dir, spec)
            copied = time.monotonic()
            log.info(
                "collection %s: building the HNSW index (snapshot took %.2f s)",
                c.name,
                copied - started,
            )
            _, err = proc.communicate()
            if c.closed:
                return
            if proc.returncode != 0:
                raise RuntimeError(err.decode(errors="replace").strip()[-2000:])
            built = time.monotonic()
            new = qe.EdgeShard.load(str(build_dir), self.config(c))
            # Before the replay: replayed writes land outside HNSW, and deletes would inflate it.
            indexed_now = dense_indexed(new) if c.bm25 is not None else 0
            journal = c.journal
            assert journal is not None
            # Catch up outside the lock (writes keep landing on the live shard), then finish
            # the few that arrived meanwhile under it.
            for _ in range(max(0, len(journal) - _SWAP_TAIL)):
                new.update(journal.popleft())
            with c.lock:
                swap_started = time.monotonic()
                if c.closed or c.shard is None:
                    return
                while journal:
                    new.update(journal.popleft())
                new.flush()
                old, old_name, old_indexed = c.shard, c.shard_name, c.indexed_points
                c.shard_name = build_name
                c.indexed_points = indexed_now
                try:
                    c.write_meta()  # the commit point
                except BaseException:
                    c.shard_name, c.indexed_points = old_name, old_indexed
                    raise
                c.shard, new, swapped = new, None, True
                c.journal = None
                info = c.shard.info()
                indexed = self.indexed(c, c.shard)
                # Without progress, another build would plan the same nothing: wait for more.
                progress = indexed > indexed_before
                c.next_build_at = 0 if progress else info.points_count + self.threshold
                swapped_at = time.monotonic()
            log.info(
                "collection %s: HNSW covers %d of %d points (optimize %.1f s, catch-up %.2f s, "
                "swap %.2f s)",
                c.name,
                indexed,
                info.points_count,
                built - copied,
                swap_started - built,
                swapped_at - swap_started,
            )
            old.close()
            shutil.rmtree(c.dir / old_name, ignore_errors=True)
        except Exception:
            if not c.closed:
                log.warning(
                    "HNSW build of collection %s failed; search stays exact", c.name, exc_info=True
                )
                with c.lock, contextlib.suppress(Exception):
                    if c.shard is not None:
                        c.next_build_at = c.shard.info().points_count + self.threshold
        finally:
            if new is not None:
                new.close()
            if not swapped:
                shutil.rmtree(build_dir, ignore_errors=True)
            with c.lock:
                if not swapped:
                    c.journal = None
                c.proc = None
                c.builder = None
                if c.shard is not None and not c.closed:
                    # Points written during this build may already call for the next one.
                    self.maybe_start(c, c.shard)
