"""The qdrant-client as the server adapter's modules share it: the collection prefix, the local
mode's lock, a missing collection as CollectionNotFound, and each collection's cached metadata.

Threads: the remote client is thread-safe; the in-process `:memory:`/path client is not, so its
calls are serialised with a lock.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import UnexpectedResponse

from rag_appliance.store.server_meta import Meta, MetaCache, from_metadata
from rag_appliance.store.validation import check_collection_name, not_found


class ServerClient:
    """`client` with collection `name` as `prefix + name` on the server."""

    def __init__(self, client: QdrantClient, prefix: str = "") -> None:
        self.client = client
        self.prefix = prefix
        options = client.init_options
        local = options.get("location") == ":memory:" or options.get("path") is not None
        self.serial: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if local else contextlib.nullcontext()
        )
        self.cache = MetaCache()

    def full(self, name: str) -> str:
        """The collection's name on the server."""
        return f"{self.prefix}{name}"

    @contextlib.contextmanager
    def call(self, name: str) -> Iterator[None]:
        """Serialise local-mode calls and turn 'no such collection' into CollectionNotFound."""
        try:
            with self.serial:
                yield
        except UnexpectedResponse as exc:
            self.cache.drop(name)  # it may have been deleted or recreated elsewhere
            if exc.status_code == 404:
                raise not_found(name) from None
            raise
        except ValueError as exc:
            self.cache.drop(name)
            # The local client's way of saying 404.
            if str(exc).startswith(f"Collection {self.full(name)} not found"):
                raise not_found(name) from None
            raise

    def meta(self, name: str, *, refresh: bool = False) -> Meta:
        """The collection's recorded provenance (cached), or CollectionNotFound."""
        check_collection_name(name)
        cached = None if refresh else self.cache.get(name)
        if cached is not None:
            return cached
        read_at = time.monotonic()
        with self.call(name):
            info = self.client.get_collection(self.full(name))
        meta = from_metadata(name, info.config.metadata)
        self.cache.put(name, meta, read_at)
        return meta
