"""The PostgreSQL store: pgvector for dense vectors, full-text search for BM25, via psycopg 3.

This module is the VectorStore: connections (a psycopg_pool pool), transactions and errors. The
tables and text search configurations are pg_sql's, the filters pg_filters', the writes and
enable_sparse pg_writes', the searches pg_search's, and the server (`store.url`, or the
embedded one under data_dir) pg_server's.

Transactions: every write method is one transaction (all or nothing), and `replace_documents`
replaces documents in one, so that a search sees a document either all old or all new. A
search is one REPEATABLE READ read-only transaction. A serialisation failure or deadlock with a
concurrent writer is retried.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from rag_appliance.errors import InvalidRequest, ServiceUnavailable, SettingsError
from rag_appliance.store import pg_aliases, pg_hnsw, pg_search, pg_sql, pg_writes
from rag_appliance.store.aliases import check_not_alias
from rag_appliance.store.base import (
    DEFAULT_BM25,
    Bm25Config,
    CollectionInfo,
    Filter,
    FusionMethod,
    Hit,
    Match,
    Point,
    Provenance,
    Record,
    SearchMode,
    VectorStore,
)
from rag_appliance.store.bm25 import check_bm25
from rag_appliance.store.pg_filters import where
from rag_appliance.store.pg_hnsw import HnswBuilder
from rag_appliance.store.pg_server import EmbeddedPostgres, check_database, one_line, search_path
from rag_appliance.store.pg_sql import Cursor, Meta
from rag_appliance.store.provenance import provenance_conflict, utc_now
from rag_appliance.store.search import plan as plan_search
from rag_appliance.store.validation import (
    check_collection_name,
    check_limit,
    check_provenance,
    not_found,
    scroll_offset,
)

if TYPE_CHECKING:
    from rag_appliance.settings import Settings

log = logging.getLogger(__name__)

SCHEMA = "rag_appliance"
# Schema names the store accepts: plain lowercase identifiers (no quoting surprises, no "%").
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}", re.ASCII)
# Tries of a write transaction that lost a deadlock or serialisation race.
WRITE_TRIES = 3
# Tries of delete_collection's DROP TABLE (after cancelling index builds), DROP_LOCK_S each.
DROP_TRIES, DROP_LOCK_S = 5, 2


def from_settings(settings: Settings) -> VectorStore:
    """The store on `store.url`, or on the embedded PostgreSQL under `data_dir/postgres`."""
    store = settings.store
    if store.url:
        return PgVectorStore(
            store.url,
            pool_size=store.pool_size,
            timeout=store.timeout_s,
            hnsw_threshold=store.hnsw_threshold,
        )
    server = EmbeddedPostgres.start(settings.data_dir / "postgres")
    try:
        return PgVectorStore(
            server.conninfo,
            pool_size=store.pool_size,
            timeout=store.timeout_s,
            hnsw_threshold=store.hnsw_threshold,
            server=server,
            setting=f"store.url is not set; the embedded PostgreSQL under {server.pgdata}",
        )
    except BaseException:
        server.release()
        raise


class PgVectorStore:
    """VectorStore on PostgreSQL + pgvector; its tables live in `schema`."""

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = SCHEMA,
        pool_size: int = 8,
        timeout: float = 30.0,
        hnsw_threshold: int = 20_000,
        server: EmbeddedPostgres | None = None,
        setting: str = "store.url",
    ) -> None:
        """Connect to `conninfo` (a libpq conninfo or postgresql:// URL); `server` is released
        on close. SettingsError naming `setting` when the database is unusable. A collection's
        rows are HNSW-indexed in the background once `hnsw_threshold` of them are not (pg_hnsw;
        0: never, exact search only)."""
        if hnsw_threshold < 0:
            raise ValueError(f"hnsw_threshold must be 0 or more, not {hnsw_threshold}")
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"invalid schema name {schema!r}: use [a-z_][a-z0-9_]*, 1-63 chars")
        self._schema = schema
        self._server = server
        ext_schema, version = check_database(conninfo, setting, schema, timeout)
        if version < (0, 5):
            raise SettingsError(f"{setting}: pgvector {version} has no HNSW index; need 0.5+")
        # pgvector 0.8 scans an HNSW index on until a filtered search has its rows.
        self._iterative_scan = version >= (0, 8)
        if not self._iterative_scan:
            log.warning("pgvector < 0.8: filtered dense searches may return fewer hits")

        def configure(conn: psycopg.Connection[Any]) -> None:
            conn.execute(search_path(schema, ext_schema))
            register_vector(conn)

        self._pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout))},
            configure=configure,
            check=ConnectionPool.check_connection,
            timeout=timeout,
            open=False,
            name=f"rag-appliance-{schema}",
        )
        try:
            self._pool.open(wait=True, timeout=timeout)
            with self._ddl() as cur:
                pg_sql.ensure_registry(cur, schema)
                pg_aliases.ensure_table(cur, schema)
        except (PoolTimeout, psycopg.Error, ServiceUnavailable) as exc:
            self._pool.close()
            raise SettingsError(f"{setting}: PostgreSQL is not usable: {one_line(exc)}") from None
        self._builder = HnswBuilder(
            conninfo, schema, (schema, ext_schema), hnsw_threshold, max(timeout, 10.0), self._read
        )

    # -- VectorStore -------------------------------------------------------------------------

    def create_collection(
        self, name: str, provenance: Provenance, *, bm25: Bm25Config | None = DEFAULT_BM25
    ) -> CollectionInfo:
        """Create `name` with BM25 terms unless `bm25` is None (idempotent for the same
        provenance, keeping the existing BM25 config; Conflict for another provenance)."""
        check_collection_name(name)
        check_provenance(provenance)
        if bm25 is not None:
            check_bm25(bm25)
        with self._ddl() as cur:
            stored = pg_sql.find_meta(cur, self._schema, name)
            if stored is None:
                check_not_alias(name, pg_aliases.read(cur, self._schema))
                table = pg_sql.table_name(name)
                config = None if bm25 is None else pg_sql.ts_config(cur, self._schema, bm25)
                pg_sql.create_table(cur, self._schema, table, provenance.dimension)
                stored = Meta(name, table, provenance, utc_now(), bm25, config, open_seg=0)
                pg_sql.insert_meta(cur, self._schema, stored)
        if stored.provenance != provenance:
            raise provenance_conflict(name, stored.provenance, provenance)
        return self.get_collection(name)

    def get_collection(self, name: str) -> CollectionInfo:
        """The collection's provenance, size and BM25 config."""
        check_collection_name(name)
        with self._read(name) as (cur, meta):
            return self._info(cur, meta)

    def list_collections(self) -> list[CollectionInfo]:
        """Every collection, by name."""
        with self._snapshot(None) as cur:
            return [self._info(cur, meta) for meta in pg_sql.list_meta(cur, self._schema)]

    def delete_collection(self, name: str) -> None:
        """Delete the collection (waits for the writes in flight on it; cancels its index
        builds)."""
        check_collection_name(name)
        self._builder.cancel(name)
        with self._ddl(name) as cur:
            meta = pg_sql.read_meta(cur, self._schema, name)
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE name = %s").format(
                    sql.Identifier(self._schema, pg_sql.REGISTRY)
                ),
                (name,),
            )
            for attempt in range(1, DROP_TRIES + 1):
                # A build that started after the cancel would hold the DROP for its whole
                # length: cancel again each time the lock takes longer than DROP_LOCK_S.
                wait = f"{DROP_LOCK_S}s" if attempt < DROP_TRIES else "0"
                try:
                    with cur.connection.transaction():  # a savepoint
                        pg_hnsw.cancel_builds(cur, self._schema, meta.table)
                        cur.execute("SELECT set_config('lock_timeout', %s, true)", (wait,))
                        pg_sql.drop_table(cur, self._schema, meta.table)
                    break
                except (pg_errors.LockNotAvailable, pg_errors.DeadlockDetected):
                    continue  # (a build waiting for this transaction to end: cancelled next)

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        """Insert or replace points by id (Conflict if a vector has the wrong dimension)."""
        self._write(name, lambda cur, meta: pg_writes.upsert(cur, self._schema, meta, points))
        self._builder.poke(name, len(points))

    def replace_documents(self, name: str, doc_ids: Sequence[str], points: Sequence[Point]) -> None:
        """Delete every point whose payload doc_id is one of `doc_ids` and upsert `points`, in
        one transaction: a search sees the old documents or the new ones, never a mix or none
        (the optional capability ingest/pipeline.py uses when a store has it)."""
        gone = where(Filter(must=(Match("doc_id", tuple(doc_ids)),)))

        def replace(cur: Cursor, meta: Meta) -> None:
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE {}").format(self._table(meta), gone.sql), gone.params
            )
            pg_writes.upsert(cur, self._schema, meta, points)

        self._write(name, replace)
        self._builder.poke(name, len(points))

    def set_payload(self, name: str, flt: Filter, payload: dict[str, Any]) -> None:
        """Merge `payload`'s keys into the payload of every point matching `flt`."""
        merged = pg_writes.payload_json(payload)
        condition = where(flt)
        rewritten = 0

        def update(cur: Cursor, meta: Meta) -> None:
            nonlocal rewritten
            cur.execute(
                sql.SQL("UPDATE {} SET payload = payload || %(merged)s::jsonb{} WHERE {}").format(
                    self._table(meta), pg_writes.moved(meta), condition.sql
                ),
                {**condition.params, "merged": merged},
            )
            rewritten = cur.rowcount

        self._write(name, update)
        self._builder.poke(name, rewritten)  # the rows it rewrote joined the tail

    def delete(self, name: str, flt: Filter) -> None:
        """Delete every point matching `flt`."""
        condition = where(flt)
        self._write(
            name,
            lambda cur, meta: cur.execute(
                sql.SQL("DELETE FROM {} WHERE {}").format(self._table(meta), condition.sql),
                condition.params,
            ),
        )

    def count(self, name: str, flt: Filter | None = None) -> int:
        """The exact number of points matching `flt` (all points without one)."""
        condition = where(flt)
        with self._read(name) as (cur, meta):
            row = cur.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
                    self._table(meta), condition.sql
                ),
                condition.params,
            ).fetchone()
        assert row is not None
        return int(row[0])

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
        condition = where(flt)
        with self._read(name) as (cur, meta):
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
            return pg_search.search(
                cur,
                self._schema,
                meta,
                plan,
                condition,
                query_text,
                iterative_scan=self._iterative_scan,
            )

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
        `with_vectors` adds each point's dense vector (float32)."""
        check_limit(limit, "limit")
        start = scroll_offset(offset)
        condition = where(flt)
        vectors = sql.SQL(", embedding" if with_vectors else ", NULL")
        with self._read(name) as (cur, meta):
            rows = cur.execute(
                sql.SQL(
                    "SELECT id::text, payload{} FROM {} WHERE {} AND (%(start)s::uuid IS NULL "
                    "OR id >= %(start)s::uuid) ORDER BY id LIMIT %(n)s"
                ).format(vectors, self._table(meta), condition.sql),
                {**condition.params, "start": start, "n": limit + 1},
            ).fetchall()
        page = [Record(i, p, None if v is None else v.to_numpy()) for i, p, v in rows[:limit]]
        return page, rows[limit][0] if len(rows) > limit else None

    def enable_sparse(
        self,
        name: str,
        bm25: Bm25Config = DEFAULT_BM25,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> CollectionInfo:
        """Give a dense-only collection BM25 terms from its points' payload "text", in place
        (no-op when it has them); see pg_writes.upgrade."""
        check_collection_name(name)
        check_bm25(bm25)
        pg_writes.upgrade(self._locked, self._ddl, self._schema, name, bm25, progress)
        info = self.get_collection(name)
        self._builder.poke(name, info.points_count)  # the rows it tokenised joined the tail
        return info

    def aliases(self) -> dict[str, str]:
        """Every alias and the collection it points to (pg_aliases)."""
        with self._snapshot(None) as cur:
            return pg_aliases.read(cur, self._schema)

    def set_alias(self, alias: str, collection: str) -> None:
        """Create or repoint `alias` in one transaction."""
        with self._ddl() as cur:
            pg_aliases.set_alias(cur, self._schema, alias, collection)

    def delete_alias(self, alias: str) -> None:
        """Drop `alias` (its collection stays); 404 when there is none."""
        with self._ddl() as cur:
            pg_aliases.delete_alias(cur, self._schema, alias)

    def close(self) -> None:
        """Stop the index builds (a build cut short is redone later), close the connections,
        and stop the embedded server if this store started it (idempotent)."""
        self._builder.stop()
        self._pool.close()
        if self._server is not None:
            self._server.release()
            self._server = None

    # -- testing and operations --------------------------------------------------------------

    def indexed_points(self, name: str) -> int:
        """How many of the collection's points are in HNSW-indexed segments (the rest: exact
        search)."""
        with self._read(name) as (cur, meta):
            if meta.open_seg is None:  # a table made before segments: one index over all rows
                if meta.provenance.dimension > pg_sql.HNSW_MAX_DIMENSION:
                    return 0
                return self._info(cur, meta).points_count
            if not meta.segments:
                return 0
            row = cur.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE seg <= {}").format(
                    self._table(meta), sql.Literal(meta.segments[-1].last)
                )
            ).fetchone()
        assert row is not None
        return int(row[0])

    def wait_for_index(self, name: str, timeout: float | None = None) -> bool:
        """Index the collection's unindexed rows if they reach the threshold and wait until
        nothing is left to build; False on timeout or if the build failed."""
        with self._read(name):
            pass  # CollectionNotFound
        return self._builder.wait(name, timeout)

    # -- internals ---------------------------------------------------------------------------

    def _table(self, meta: Meta) -> sql.Identifier:
        return sql.Identifier(self._schema, meta.table)

    def _info(self, cur: Cursor, meta: Meta) -> CollectionInfo:
        row = cur.execute(sql.SQL("SELECT count(*) FROM {}").format(self._table(meta))).fetchone()
        assert row is not None
        return CollectionInfo(meta.name, meta.provenance, int(row[0]), meta.created_at, meta.bm25)

    @contextlib.contextmanager
    def _transaction(self, name: str | None) -> Iterator[Cursor]:
        """A transaction on a pooled connection, PostgreSQL's errors as the app's."""
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield conn.cursor()
        except pg_errors.TransactionRollback:
            raise  # a deadlock or serialisation failure: _write tries again
        except pg_errors.UndefinedTable:
            # The collection was deleted between reading its registry row and using its table.
            if name is None:
                raise
            raise not_found(name) from None
        except (pg_errors.DataException, pg_errors.ProgramLimitExceeded) as exc:
            raise InvalidRequest(f"PostgreSQL refused the data: {one_line(exc)}") from None
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise ServiceUnavailable(
                f"the pgvector store's PostgreSQL is unavailable: {one_line(exc)}"
            ) from None

    @contextlib.contextmanager
    def _snapshot(self, name: str | None) -> Iterator[Cursor]:
        """A REPEATABLE READ, read-only transaction: one snapshot for all its statements."""
        with self._transaction(name) as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield cur

    @contextlib.contextmanager
    def _read(self, name: str) -> Iterator[tuple[Cursor, Meta]]:
        """A snapshot with collection `name`'s registry row (CollectionNotFound without)."""
        check_collection_name(name)
        with self._snapshot(name) as cur:
            yield cur, pg_sql.read_meta(cur, self._schema, name)

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[tuple[Cursor, Meta]]:
        """A write transaction with the collection's registry row share-locked."""
        check_collection_name(name)
        with self._transaction(name) as cur:
            yield cur, pg_sql.read_meta(cur, self._schema, name, share=True)

    @contextlib.contextmanager
    def _ddl(self, name: str | None = None) -> Iterator[Cursor]:
        """A transaction holding the schema's DDL lock."""
        with self._transaction(name) as cur:
            pg_sql.lock(cur, self._schema)
            yield cur

    def _write(self, name: str, body: Callable[[Cursor, Meta], object]) -> None:
        """Run `body` in a write transaction on `name`, again if it lost a deadlock or a
        serialisation race with another writer (PostgreSQL rolled it back)."""
        for attempt in range(1, WRITE_TRIES + 1):
            try:
                with self._locked(name) as (cur, meta):
                    body(cur, meta)
                return
            except pg_errors.TransactionRollback:
                if attempt == WRITE_TRIES:
                    raise
                time.sleep(0.01 * attempt)
