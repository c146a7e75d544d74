"""The pgvector adapter's HNSW indexes: built in the background, by segment, as the embedded
Qdrant store builds its own.

pgvector adds every row to an HNSW index as the row is written: ~3 ms per 384-d point on two
loaded cores, so writes into an indexed table ran at 55-300 points/s however they were batched.
A build (CREATE INDEX) costs about as much per point, but off the write path. So rows are
written unindexed and indexed afterwards, a range at a time:

- every row has `seg`, the registry's `open_seg` when it was written (an UPDATE moves a row to
  the open segment, pg_writes.moved); a *segment* is a range of sealed seg numbers with a partial
  HNSW index `WHERE seg >= first AND seg <= last` (pg_sql.seg_range), listed in the registry's
  `segments`. The rows after the last segment, the *tail*, have no HNSW index: searches scan them
  exactly (pg_search.dense_query), as Qdrant scans its segments below the indexing threshold.
- Once the tail holds `threshold` points, the store's builder thread (woken by writes) makes a
  segment of it:
  1. it takes a session advisory lock on the table (one builder per collection, replicas
     included) and drops index leftovers (an invalid index of a build cut short, or one that no
     segment names);
  2. it chooses the segments to merge into the new one: walking back from the last segment, each
     whose live rows are no more than the rows gathered so far (so there are at most
     log2(n / threshold) + 1 segments, the HNSW scans of a search, and a row is rebuilt at most
     that many times);
  3. it seals the open segment (an UPDATE of the registry row, which waits for the writes in
     flight, since they hold its share lock; later writes get the next seg number);
  4. CREATE INDEX CONCURRENTLY over the range: writes and searches go on meanwhile (exact on the
     range until the index is valid), with maintenance_work_mem sized to hold the graph and
     PostgreSQL's parallel workers (serially if the server has too little shared memory);
  5. it records the new segment list (the commit point: a search's snapshot holds the old list or
     the new one, and each is right, since every sub-query is exact on its own rows whatever index
     serves it), drops the merged segments' indexes (DROP INDEX CONCURRENTLY waits for searches
     using them) and ANALYZEs the table.

A crash or a cancelled build leaves an invalid index, which the next build drops; the rows are
searched exactly meanwhile. `threshold` 0 means no HNSW index (exact search only), as on the
embedded store. Collections over pgvector's 2000 HNSW dimensions are never indexed; tables made
before segments keep the single index they were created with.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from rag_appliance.errors import CollectionNotFound
from rag_appliance.store.pg_server import one_line, search_path
from rag_appliance.store.pg_sql import (
    HNSW_MAX_DIMENSION,
    Cursor,
    Meta,
    Segment,
    find_meta,
    seal,
    seg_range,
    segment_index_name,
    set_segments,
)

log = logging.getLogger(__name__)

# A build's maintenance_work_mem: the graph's estimated size, within these bounds (MB). pgvector
# builds slowly, row by row on disk, once its graph outgrows it.
MIN_BUILD_MB, MAX_BUILD_MB = 64, 2048
# Bytes of pgvector's in-memory HNSW graph per point beside its vector (neighbour lists, m 16).
GRAPH_BYTES_PER_POINT = 1024
# Seconds before a collection whose build failed is tried again.
RETRY_S = 60.0
# Seconds between counts of a tail that this store's writes alone would not bring to the
# threshold (other replicas write too).
CHECK_S = 5.0
# A read transaction on collection `name`: its cursor and registry row.
ReadTransaction = Callable[[str], AbstractContextManager[tuple[Cursor, Meta]]]


def build_memory_mb(points: int, dimension: int) -> int:
    """maintenance_work_mem for an HNSW build over `points` vectors of `dimension`, in MB."""
    graph = points * (4 * dimension + GRAPH_BYTES_PER_POINT) * 1.25
    return int(min(MAX_BUILD_MB, max(MIN_BUILD_MB, graph / 2**20 + 1)))


@dataclass
class _Tail:
    """What the builder knows of a collection's tail between checks."""

    points: int = 0  # counted at the last check
    written: int = 0  # points this store wrote to the collection since
    checked: float = -math.inf  # when (monotonic)
    failed: float | None = None  # when its last build failed


class HnswBuilder:
    """A store's builder thread (module docstring), started on the first write.

    `poke(name, points)` after each write. The tail is counted (a pooled read) when the points
    counted at the last check plus those this store wrote since reach the threshold, or at most
    every CHECK_S while a collection is written to (other replicas write too), so that a bulk
    load does not count the tail after every batch."""

    def __init__(
        self,
        conninfo: str,
        schema: str,
        path: tuple[str, ...],
        threshold: int,
        timeout: float,
        read: ReadTransaction,
    ) -> None:
        self.threshold = threshold
        self._conninfo = conninfo
        self._schema = schema
        self._path = path  # the search_path: the schema and pgvector's (its operator classes)
        self._timeout = timeout
        self._read = read
        self._cond = threading.Condition()
        self._tails: dict[str, _Tail] = {}
        self._queue: dict[str, None] = {}  # collections to check now, in order
        self._busy: str | None = None
        self._conn: psycopg.Connection[Any] | None = None  # the busy build's, to cancel it
        self._cancelled: set[str] = set()
        self._thread: threading.Thread | None = None
        self._wake: float | None = None  # seconds until the next check falls due
        self._stopped = False

    def poke(self, name: str, points: int) -> None:
        """`points` were written to collection `name`: check its tail when due."""
        if self.threshold <= 0:
            return
        with self._cond:
            if self._stopped:
                return
            self._cancelled.discard(name)
            tail = self._tails.setdefault(name, _Tail())
            tail.written += points
            if tail.failed is not None and time.monotonic() - tail.failed < RETRY_S:
                return
            if (
                tail.points + tail.written >= self.threshold
                or time.monotonic() - tail.checked >= CHECK_S
            ):
                self._queue[name] = None
            self._start()
            self._cond.notify_all()

    def wait(self, name: str, timeout: float | None) -> bool:
        """Check `name` now and wait until nothing is left to index in it; False on timeout or
        when its build failed."""
        if self.threshold <= 0:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if self._stopped:
                return False
            self._cancelled.discard(name)
            self._tails.setdefault(name, _Tail()).failed = None
            self._queue[name] = None
            self._start()
            self._cond.notify_all()
            while name in self._queue or self._busy == name:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return self._tails.get(name, _Tail()).failed is None

    def cancel(self, name: str) -> None:
        """Stop checking and building `name` (it is being deleted)."""
        with self._cond:
            self._queue.pop(name, None)
            self._tails.pop(name, None)
            self._cancelled.add(name)
            conn = self._conn if self._busy == name else None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.cancel_safe(timeout=self._timeout)

    def stop(self) -> None:
        """Cancel the build in progress and end the thread (idempotent)."""
        with self._cond:
            self._stopped = True
            self._queue.clear()
            conn, thread = self._conn, self._thread
            self._cond.notify_all()
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.cancel_safe(timeout=self._timeout)
        if thread is not None:
            thread.join(timeout=self._timeout)

    # -- the thread --------------------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"pg-hnsw-{self._schema}", daemon=True
            )
            self._thread.start()

    def _halted(self, name: str) -> bool:
        with self._cond:
            return self._stopped or name in self._cancelled

    def _next(self) -> str | None:
        """The next collection to check (condition held): queued, or written to and not
        checked for CHECK_S; None when there is none yet (the wait it needs is then set)."""
        if self._queue:
            name = next(iter(self._queue))
            del self._queue[name]
            return name
        now = time.monotonic()
        due = [
            (t.checked + CHECK_S, name)
            for name, t in self._tails.items()
            if t.written and (t.failed is None or now - t.failed >= RETRY_S)
        ]
        if due and min(due)[0] <= now:
            return min(due)[1]
        self._wake = min(due)[0] - now if due else None
        return None

    def _run(self) -> None:
        while True:
            with self._cond:
                name = None
                while not self._stopped and (name := self._next()) is None:
                    self._cond.wait(self._wake)
                if self._stopped or name is None:
                    return
                self._busy = name
            try:
                self._check(name)
            except Exception as exc:
                if not self._halted(name):
                    log.warning(
                        "HNSW build of collection %r failed, its new rows stay searched "
                        "exactly: %s",
                        name,
                        one_line(exc),
                    )
                    with self._cond:
                        self._tails.setdefault(name, _Tail()).failed = time.monotonic()
            finally:
                with self._cond:
                    self._busy, self._conn = None, None
                    self._cond.notify_all()

    def _check(self, name: str) -> None:
        """Count `name`'s tail and build segments while it holds `threshold` points."""
        with self._cond:
            tail = self._tails.setdefault(name, _Tail())
            tail.written, tail.checked = 0, time.monotonic()
        try:
            with self._read(name) as (cur, meta):
                points = _tail_points(cur, self._schema, meta)
        except CollectionNotFound:
            with self._cond:
                self._tails.pop(name, None)
            return
        tail.points = points
        if points < self.threshold or self._halted(name):
            return
        conn = psycopg.connect(
            self._conninfo, autocommit=True, connect_timeout=max(1, int(self._timeout))
        )
        # Closing the connection ends the session and releases its advisory lock.
        with conn:
            conn.execute(search_path(*self._path))
            with self._cond:
                if self._stopped or name in self._cancelled:
                    return
                self._conn = conn
            key = f"rag-hnsw:{self._schema}.{name}"
            row = conn.execute(
                "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)
            ).fetchone()
            if row is None or not row[0]:
                return  # another process builds it, and checks again after each build
            while not self._halted(name):
                left = self._build(conn, name)
                if left is None:
                    break
                tail.points = left

    def _build(self, conn: psycopg.Connection[Any], name: str) -> int | None:
        """Make one segment of `name`'s tail if it holds `threshold` points: the points left in
        the tail, or None when there was nothing to build."""
        cur = conn.cursor()
        meta = find_meta(cur, self._schema, name)
        if meta is None:
            return None
        points = _tail_points(cur, self._schema, meta)
        if points < self.threshold:
            return None
        table = sql.Identifier(self._schema, meta.table)
        self._drop_leftovers(conn, meta)
        first, kept = meta.tail, len(meta.segments)
        for i in reversed(range(len(meta.segments))):
            segment = meta.segments[i]
            live = _count(cur, table, seg_range(segment.first, segment.last))
            if live > points:
                break
            points, first, kept = points + live, segment.first, i
        last = seal(cur, self._schema, name)
        if last is None or self._halted(name):
            return None
        index = segment_index_name(meta.table, last)
        began = time.perf_counter()
        self._create_index(conn, meta, index, seg_range(first, last), points)
        segments = (*meta.segments[:kept], Segment(first, last, index, points))
        if not set_segments(cur, self._schema, name, segments):
            return None  # deleted meanwhile: the table and its indexes are gone with it
        log.info(
            "HNSW index of collection %r over %d points (seg %d-%d) in %.1f s",
            name,
            points,
            first,
            last,
            time.perf_counter() - began,
        )
        for merged in meta.segments[kept:]:
            self._drop_index(conn, merged.index)
        conn.execute(sql.SQL("ANALYZE {}").format(table))
        return _count(cur, table, seg_range(last + 1, None))

    def _create_index(
        self,
        conn: psycopg.Connection[Any],
        meta: Meta,
        index: str,
        rows: sql.Composable,
        points: int,
    ) -> None:
        memory = build_memory_mb(points, meta.provenance.dimension)
        conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(f"{memory}MB")))
        statement = sql.SQL(
            "CREATE INDEX CONCURRENTLY {} ON {} USING hnsw (embedding vector_cosine_ops) WHERE {}"
        ).format(sql.Identifier(index), sql.Identifier(self._schema, meta.table), rows)
        try:
            conn.execute(statement)
        except (pg_errors.DiskFull, pg_errors.OutOfMemory) as exc:
            # A parallel build keeps its graph in shared memory (maintenance_work_mem of it),
            # which a container's small /dev/shm refuses; a serial one in the backend's memory.
            log.info("parallel HNSW build refused (%s): building serially", one_line(exc))
            self._drop_index(conn, index)
            conn.execute("SET max_parallel_maintenance_workers = 0")
            conn.execute(statement)

    def _drop_leftovers(self, conn: psycopg.Connection[Any], meta: Meta) -> None:
        """Drop the table's segment indexes that no segment names (a build cut short)."""
        known = {s.index for s in meta.segments}
        prefix = f"{meta.table}_h"
        rows = conn.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = %s::regclass",
            (sql.Identifier(self._schema, meta.table).as_string(conn),),
        ).fetchall()
        for (index,) in rows:
            suffix = index[len(prefix) :]
            if index.startswith(prefix) and suffix.isdigit() and index not in known:
                self._drop_index(conn, index)

    def _drop_index(self, conn: psycopg.Connection[Any], index: str) -> None:
        conn.execute(
            sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                sql.Identifier(self._schema, index)
            )
        )


def _tail_points(cur: Cursor, schema: str, meta: Meta) -> int:
    """The points of the collection's tail, 0 if it is never indexed."""
    if meta.open_seg is None or meta.provenance.dimension > HNSW_MAX_DIMENSION:
        return 0  # a table made before segments (one index), or too wide for HNSW
    return _count(cur, sql.Identifier(schema, meta.table), seg_range(meta.tail, None))


def _count(cur: Cursor, table: sql.Composable, rows: sql.Composable) -> int:
    row = cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(table, rows)).fetchone()
    return 0 if row is None else int(row[0])


def cancel_builds(cur: psycopg.Cursor[Any], schema: str, table: str) -> None:
    """Cancel every CREATE INDEX running on the table, this process's or another's (before the
    table is dropped: DROP TABLE would wait for the build to finish)."""
    cur.execute(
        "SELECT pg_cancel_backend(pid) FROM pg_stat_progress_create_index "
        "WHERE relid = to_regclass(%s) AND pid <> pg_backend_pid()",
        (sql.Identifier(schema, table).as_string(cur.connection),),
    )
