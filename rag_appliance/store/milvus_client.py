"""The pymilvus client as the Milvus adapter's modules share it: connecting (a server at a URL,
or Milvus Lite in a local file), collection names, the write lock, calls with a timeout and a
missing collection as CollectionNotFound, and each collection's metadata, read and cached.

Names: ours allow `-` and `.` and may start with a digit; Milvus' are letters, digits and `_`,
starting with a letter or `_`. A name maps reversibly to `prefix + escaped`, `_` escaping as
`__`, `-` as `_h`, `.` as `_d` (so `Docs-2024_v1.2` is `rag_Docs_h2024__v1_d2`).

Metadata: provenance and the BM25 config are the collection property `rag_appliance` (JSON),
written at creation and by enable_sparse; a collection without it was not made by the appliance
(Conflict). Milvus Lite keeps collection properties, so no metadata collection is needed.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pymilvus import MilvusClient
from pymilvus.client.types import LoadState
from pymilvus.exceptions import MilvusException

from rag_appliance.errors import Conflict, InvalidRequest, SettingsError
from rag_appliance.store.base import Bm25Config
from rag_appliance.store.milvus_filters import EVERYTHING, quote
from rag_appliance.store.milvus_rows import ID
from rag_appliance.store.provenance import (
    bm25_from_dict,
    bm25_to_dict,
    provenance_from_dict,
    provenance_to_dict,
)
from rag_appliance.store.server_meta import Meta, MetaCache
from rag_appliance.store.validation import check_collection_name, not_found

DEFAULT_PREFIX = "rag_"
META_KEY = "rag_appliance"
# The layout of the fields (milvus_rows); another one is not this adapter's to read.
FORMAT = 1
# Milvus' largest topk / query window: a search or page never asks for more.
MAX_LIMIT = 16384
# Milvus Lite answers from its memtable row by row in Python and from flushed segments in bulk
# (about 10x faster at a few thousand rows), and flushes by itself only at 128 MB: this store
# flushes a Lite collection after every FLUSH_ROWS rows it writes. (A server flushes itself.)
FLUSH_ROWS = 1000
_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}", re.ASCII)
_ESCAPE = {"_": "__", "-": "_h", ".": "_d"}
_UNESCAPE = {v[1]: k for k, v in _ESCAPE.items()}
# Milvus' code for "collection not found" (pymilvus ErrorCode.COLLECTION_NOT_FOUND).
_NOT_FOUND = 100
_AUTH_WORDS = ("auth", "credential", "password", "token", "permission", "unauthenticated")
# Milvus Lite files open in this process: clients of each, and its write lock.
_LITE_LOCK = threading.Lock()
_LITE_USERS: dict[str, int] = {}
_LITE_WRITES: dict[str, threading.RLock] = {}


def connect_url(url: str, token: str | None, timeout: float) -> MilvusClient:
    """A client on the Milvus server at `url`; a one-line SettingsError when it cannot be."""
    try:
        return MilvusClient(uri=url, token=token or "", timeout=timeout)
    except MilvusException as exc:
        message = str(exc.message).replace("\n", " ")
        if any(word in message.lower() for word in _AUTH_WORDS):
            raise SettingsError(
                f"store.api_key: the Milvus server at store.url {url!r} refused the "
                f"credentials ({message})"
            ) from None
        raise SettingsError(
            f"store.url: cannot connect to the Milvus server at {url!r} ({message}); "
            "check store.url (e.g. http://host:19530) and that the server is running"
        ) from None


def connect_lite(path: Path) -> MilvusClient:
    """A client on Milvus Lite in the local file `path` (a `.db` folder), started in-process;
    a one-line SettingsError when it cannot start (another process holding the file, say).

    pymilvus runs one Lite server per file and process, shared by every client of that file:
    it is stopped when the last of them is released (release_lite).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        client = MilvusClient(uri=str(path))
    except MilvusException as exc:
        raise SettingsError(
            f"store.backend milvus without store.url: Milvus Lite cannot open {path} "
            f"({exc.message}); is another rag-appliance process using this data_dir?"
        ) from None
    with _LITE_LOCK:
        key = str(path.resolve())
        _LITE_USERS[key] = _LITE_USERS.get(key, 0) + 1
        _LITE_WRITES.setdefault(key, threading.RLock())
    return client


def release_lite(path: Path) -> None:
    """Release a client of the Lite file `path`; the last one stops its server (which flushes
    the data and frees the file lock)."""
    from milvus_lite.server_manager import server_manager_instance

    key = str(path.resolve())
    with _LITE_LOCK:
        users = _LITE_USERS.pop(key, 0) - 1
        if users > 0:
            _LITE_USERS[key] = users
            return
        _LITE_WRITES.pop(key, None)
    server_manager_instance.release_server(str(path))


def lite_writes(path: Path) -> threading.RLock:
    """The write lock of every store on the Lite file `path` in this process: Lite requires
    writes to a collection to be serialised."""
    with _LITE_LOCK:
        return _LITE_WRITES.setdefault(str(path.resolve()), threading.RLock())


def encode_name(name: str) -> str:
    """A collection name (already checked) in Milvus' alphabet, reversibly."""
    return "".join(_ESCAPE.get(ch, ch) for ch in name)


def decode_name(escaped: str) -> str | None:
    """The name `encode_name` made, or None if `escaped` is not one."""
    out: list[str] = []
    chars = iter(escaped)
    for ch in chars:
        if ch != "_":
            out.append(ch)
            continue
        original = _UNESCAPE.get(next(chars, ""))
        if original is None:
            return None
        out.append(original)
    name = "".join(out)
    try:
        return check_collection_name(name)
    except InvalidRequest:
        return None


def check_prefix(prefix: str) -> str:
    """The prefix if Milvus names may start with it, else ValueError."""
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"invalid Milvus collection prefix {prefix!r}: use [A-Za-z_][A-Za-z0-9_]*")
    return prefix


def properties(name: str, meta: Meta) -> dict[str, str]:
    """The collection properties that record `meta`."""
    record = {
        "format": FORMAT,
        "name": name,
        **provenance_to_dict(meta.provenance),
        "created_at": meta.created_at,
        "bm25": bm25_to_dict(meta.bm25),
    }
    return {META_KEY: json.dumps(record, sort_keys=True)}


def from_properties(name: str, props: Mapping[str, Any] | None) -> Meta:
    """The appliance's record in collection `name`'s properties; Conflict if there is none."""
    raw = (props or {}).get(META_KEY)
    with contextlib.suppress(ValueError, TypeError, KeyError):
        record = json.loads(raw) if isinstance(raw, str) else None
        if isinstance(record, dict) and record.get("format") == FORMAT:
            return Meta(
                provenance_from_dict(record),
                str(record["created_at"]),
                bm25_from_dict(record.get("bm25")),
            )
    raise Conflict(
        f"collection {name!r} exists on the Milvus server but was not created by "
        "rag-appliance (it has no rag_appliance property of this version)",
        param="collection",
    )


class MilvusConn:
    """`client` with collection `name` as `prefix + encode_name(name)` on the server."""

    def __init__(
        self,
        client: MilvusClient,
        prefix: str = DEFAULT_PREFIX,
        *,
        timeout: float | None = None,
        writes: threading.RLock | None = None,
    ) -> None:
        self.client = client
        self.prefix = check_prefix(prefix)
        self.timeout = timeout
        # Writes are serialised: Milvus Lite requires it, and set_payload and enable_sparse read
        # rows and write them back, which another thread's write must not interleave. (`writes`:
        # the lock shared by every store of the same Lite file.)
        self.writes = writes or threading.RLock()
        self.cache = MetaCache()
        self._loaded: set[str] = set()
        self._unflushed: dict[str, int] = {}  # Lite: rows written since the last flush
        version = str(client.get_server_version(timeout=timeout))
        self.lite = version.startswith("milvus_lite")
        # Upserts of only some fields arrived in Milvus 2.6 (Lite has them too).
        self.partial_updates = self.lite or _version(version) >= (2, 6)

    def full(self, name: str) -> str:
        """The collection's name on the server."""
        return self.prefix + encode_name(name)

    def name_of(self, full: str) -> str | None:
        """Our name for a server collection, None if it is not under this prefix."""
        if not full.startswith(self.prefix):
            return None
        return decode_name(full[len(self.prefix) :])

    @contextlib.contextmanager
    def call(self, name: str) -> Iterator[None]:
        """Turn Milvus' 'collection not found' into CollectionNotFound."""
        try:
            yield
        except MilvusException as exc:
            message = str(exc.message).lower()
            if exc.code == _NOT_FOUND or ("collection" in message and "not exist" in message):
                self.cache.drop(name)  # deleted elsewhere, maybe recreated
                self._loaded.discard(name)
                raise not_found(name) from None
            raise

    def meta(self, name: str, *, refresh: bool = False, load: bool = True) -> Meta:
        """The collection's recorded provenance (cached), or CollectionNotFound / Conflict;
        the collection is loaded first unless `load` is False."""
        check_collection_name(name)
        cached = None if refresh else self.cache.get(name)
        if cached is not None:
            return cached
        read_at = time.monotonic()
        full = self.full(name)
        with self.call(name):
            # Asked first: describing a missing collection logs a pymilvus error.
            if not self.client.has_collection(full, timeout=self.timeout):
                raise not_found(name)
            described = self.client.describe_collection(full, timeout=self.timeout)
        meta = from_properties(name, described.get("properties"))
        if load:  # cached only then: a cached collection is a loaded one
            self.ensure_loaded(name)
            self.cache.put(name, meta, read_at)
        return meta

    def put_meta(self, name: str, meta: Meta) -> None:
        """Record `meta` in the collection's properties (the commit point of enable_sparse)."""
        with self.call(name):
            self.client.alter_collection_properties(
                self.full(name), properties(name, meta), timeout=self.timeout
            )
        self.cache.put(name, meta)

    def ensure_loaded(self, name: str, *, again: bool = False) -> None:
        """Load the collection once per store (`again`: even if it was): Lite forgets it on
        restart, and a creation interrupted before the load leaves it unloaded."""
        if name in self._loaded and not again:
            return
        full = self.full(name)
        with self.call(name):
            state = self.client.get_load_state(full, timeout=self.timeout).get("state")
            if state != LoadState.Loaded:
                self.client.load_collection(full, timeout=self.timeout)
        self._loaded.add(name)

    def forget(self, name: str) -> None:
        """Drop what is cached about the collection (it was deleted)."""
        self.cache.drop(name)
        self._loaded.discard(name)
        self._unflushed.pop(name, None)

    # -- calls ------------------------------------------------------------------------------

    def query(self, name: str, expr: str, fields: list[str], **kwargs: Any) -> list[dict[str, Any]]:
        """Rows matching `expr` with `fields` (kwargs: limit, iterator ordering...)."""
        with self.call(name):
            rows = self.client.query(
                self.full(name), filter=expr, output_fields=fields, timeout=self.timeout, **kwargs
            )
        return list(rows)

    def page(
        self, name: str, expr: str, fields: list[str], after: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """Up to `limit` rows matching `expr` with ids after `after`, in id order.

        Asked as a query iterator's page: with `iterator`, Milvus (and Lite) return the
        smallest primary keys in order, which a plain limited query does not promise.
        """
        cursor = EVERYTHING if after is None else f"{ID} > {quote(after)}"
        where = f"({expr}) and {cursor}" if expr else cursor
        return self.query(
            name,
            where,
            fields,
            limit=min(limit, MAX_LIMIT),
            iterator="True",
            reduce_stop_for_best="True",
        )

    def count(self, name: str, expr: str = "") -> int:
        """The exact number of rows matching `expr` (all without one)."""
        (row,) = self.query(name, expr, ["count(*)"])
        return int(row["count(*)"])

    def search(
        self, name: str, data: list[Any], field: str, limit: int, expr: str, **kwargs: Any
    ) -> list[list[Any]]:
        """One result list per query in `data`, searched on `field` with the filter."""
        with self.call(name):
            return list(
                self.client.search(
                    self.full(name),
                    data=data,
                    anns_field=field,
                    limit=min(limit, MAX_LIMIT),
                    filter=expr,
                    timeout=self.timeout,
                    **kwargs,
                )
            )

    def upsert(self, name: str, rows: list[dict[str, Any]], *, partial: bool = False) -> None:
        """Insert or replace rows by id (with `partial`, only the fields given)."""
        if not rows:
            return
        kwargs = {"partial_update": True} if partial else {}
        with self.call(name):
            self.client.upsert(self.full(name), rows, timeout=self.timeout, **kwargs)
        self._wrote(name, len(rows))

    def delete(self, name: str, expr: str) -> None:
        """Delete the rows matching `expr`."""
        with self.call(name):
            self.client.delete(self.full(name), filter=expr, timeout=self.timeout)
        self._wrote(name, 1)

    def _wrote(self, name: str, rows: int) -> None:
        """Count rows written to a Lite collection; flush it every FLUSH_ROWS."""
        if not self.lite:
            return
        written = self._unflushed.get(name, 0) + rows
        if written >= FLUSH_ROWS:
            with self.call(name):
                self.client.flush(self.full(name), timeout=self.timeout)
            written = 0
        self._unflushed[name] = written


def _version(text: str) -> tuple[int, int]:
    """(major, minor) of a server version such as 'v2.6.3' ((0, 0) if unreadable)."""
    found = re.search(r"(\d+)\.(\d+)", text)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def bm25_of(meta: Meta, upgrading: Mapping[str, Bm25Config], name: str) -> Bm25Config | None:
    """The BM25 config this store writes sparse vectors with (during enable_sparse too)."""
    return meta.bm25 or upgrading.get(name)
