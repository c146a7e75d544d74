"""The pgvector adapter for tests: one embedded PostgreSQL per test session, a schema per store.

The server starts on the first store (initdb ~2 s) in a temporary directory and is stopped, and
its directory deleted, when the session's interpreter exits (atexit). Each store gets a fresh
schema, dropped on close, so tests never see each other's collections and need no new database.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from rag_appliance.store.pg_server import EmbeddedPostgres
from rag_appliance.store.pgvector import PgVectorStore

_LOCK = threading.Lock()
_SERVER: list[EmbeddedPostgres] = []


def server() -> EmbeddedPostgres:
    """The session's embedded PostgreSQL, started on first use."""
    with _LOCK:
        if not _SERVER:
            root = Path(tempfile.mkdtemp(prefix="rag-pg-"))
            started = EmbeddedPostgres.start(root / "postgres")
            atexit.register(_stop, started, root)
            with psycopg.connect(started.conninfo, autocommit=True) as conn:
                # A throwaway server: durability only costs the suite time (fsyncs per commit).
                for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                    conn.execute(sql.SQL("ALTER SYSTEM SET {} = off").format(sql.SQL(setting)))
                conn.execute("SELECT pg_reload_conf()")
            _SERVER.append(started)
        return _SERVER[0]


def _stop(started: EmbeddedPostgres, root: Path) -> None:
    started.release()
    shutil.rmtree(root, ignore_errors=True)


class TestPgVectorStore(PgVectorStore):
    """A store in its own schema of the session's server; close() drops the schema."""

    __test__ = False  # not a pytest class

    def close(self) -> None:
        """Drop this store's schema, then close its connections (idempotent)."""
        if self._pool.closed:
            return
        with self._pool.connection() as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self._schema))
            )
        super().close()


def pg_store(_tmp: Path | None = None) -> PgVectorStore:
    """A fresh, empty pgvector store (the contract suite's factory; `_tmp` is unused)."""
    return TestPgVectorStore(
        server().conninfo, schema=f"t_{uuid.uuid4().hex[:12]}", pool_size=4, timeout=10
    )
