"""AliasedStore: the one place where a collection name a user gives is resolved to a collection.

CollectionService wraps its store in one, so that every read, write, listing and deletion by
name of the pipeline, the retriever and the UI goes through it. A name that is an alias (`kb`)
stands for the collection it points to (its current version, `kb__v2`); any other name is a
collection's own. Listing shows each alias under its own name with `version` set, and hides the
collections that are versions (`<name>__v<n>` beside an alias or collection `<name>`: the
current, old and in-progress ones).

The alias table is read at most every `ttl_s` seconds: a switch made by another process (a
re-index against a shared store) is seen within that time. A call that finds its collection
gone (an old version dropped meanwhile) reads the table again and retries once.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from rag_appliance.errors import CollectionNotFound
from rag_appliance.store.aliases import version_of
from rag_appliance.store.base import (
    DEFAULT_BM25,
    Bm25Config,
    CollectionInfo,
    Filter,
    FusionMethod,
    Hit,
    Point,
    Provenance,
    Record,
    SearchMode,
    VectorStore,
)

T = TypeVar("T")
ALIAS_TTL_S = 1.0


def aliased(store: VectorStore, ttl_s: float = ALIAS_TTL_S) -> VectorStore:
    """`store` resolving aliases (itself when it already does, or has no aliases at all)."""
    if isinstance(store, AliasedStore) or not hasattr(store, "aliases"):
        return store
    if hasattr(store, "replace_documents"):
        return TransactionalAliasedStore(store, ttl_s)
    return AliasedStore(store, ttl_s)


class AliasedStore:
    """A VectorStore over `inner` with alias names resolved (see the module docstring)."""

    def __init__(self, inner: VectorStore, ttl_s: float = ALIAS_TTL_S) -> None:
        self.inner = inner
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._table: dict[str, str] = {}
        self._read_at = -float("inf")

    # -- resolution ----------------------------------------------------------------------------

    def resolve(self, name: str, *, fresh: bool = False) -> str:
        """The collection `name` stands for: its alias's target, else `name` itself."""
        return self.table(fresh=fresh).get(name, name)

    def table(self, *, fresh: bool = False) -> dict[str, str]:
        """The alias table, read again when older than the TTL (or when `fresh`)."""
        with self._lock:
            if fresh or time.monotonic() - self._read_at >= self._ttl:
                self._table = self.inner.aliases()
                self._read_at = time.monotonic()
            return dict(self._table)

    def _on(self, name: str, call: Callable[[str], T]) -> T:
        target = self.resolve(name)
        try:
            return call(target)
        except CollectionNotFound:
            again = self.resolve(name, fresh=True)
            if again == target:
                raise
            return call(again)

    def _named(self, name: str, info: CollectionInfo) -> CollectionInfo:
        if info.name == name:
            return info
        return dataclasses.replace(info, name=name, version=info.name)

    # -- VectorStore ---------------------------------------------------------------------------

    def create_collection(
        self, name: str, provenance: Provenance, *, bm25: Bm25Config | None = DEFAULT_BM25
    ) -> CollectionInfo:
        """Create `name` (or check what its alias points to: idempotent, Conflict as usual)."""
        info = self._on(name, lambda t: self.inner.create_collection(t, provenance, bm25=bm25))
        return self._named(name, info)

    def get_collection(self, name: str) -> CollectionInfo:
        """The collection `name` stands for, named `name` (`version`: its collection)."""
        return self._named(name, self._on(name, self.inner.get_collection))

    def list_collections(self) -> list[CollectionInfo]:
        """Aliases under their own names; their versions hidden; other collections as they are."""
        table = self.table(fresh=True)
        infos = {info.name: info for info in self.inner.list_collections()}
        bases = {*table, *infos}  # a shadow is built beside a collection not yet aliased
        shown = [
            info
            for name, info in infos.items()
            if name not in table.values() and not _is_version(name, bases)
        ]
        shown += [self._named(a, infos[t]) for a, t in table.items() if t in infos]
        return sorted(shown, key=lambda info: info.name)

    def delete_collection(self, name: str) -> None:
        """Delete the collection `name` stands for; an alias goes with it (old versions stay)."""
        target = self.resolve(name, fresh=True)
        if target != name:
            self.inner.delete_alias(name)  # first: nobody reaches the collection being dropped
        self.inner.delete_collection(target)
        self.table(fresh=True)

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        """Upsert into the collection `name` stands for."""
        self._on(name, lambda t: self.inner.upsert(t, points))

    def set_payload(self, name: str, flt: Filter, payload: dict[str, Any]) -> None:
        """Set payload in the collection `name` stands for."""
        self._on(name, lambda t: self.inner.set_payload(t, flt, payload))

    def delete(self, name: str, flt: Filter) -> None:
        """Delete points of the collection `name` stands for."""
        self._on(name, lambda t: self.inner.delete(t, flt))

    def count(self, name: str, flt: Filter | None = None) -> int:
        """Count in the collection `name` stands for."""
        return self._on(name, lambda t: self.inner.count(t, flt))

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
        """Search the collection `name` stands for."""
        return self._on(
            name,
            lambda t: self.inner.search(
                t,
                vector,
                top_k,
                flt,
                score_threshold,
                mode=mode,
                query_text=query_text,
                fusion=fusion,
                dense_weight=dense_weight,
                prefetch_limit=prefetch_limit,
                group_by_document=group_by_document,
            ),
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
        """Scroll the collection `name` stands for."""
        return self._on(
            name, lambda t: self.inner.scroll(t, flt, limit, offset, with_vectors=with_vectors)
        )

    def enable_sparse(
        self,
        name: str,
        bm25: Bm25Config = DEFAULT_BM25,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> CollectionInfo:
        """Give the collection `name` stands for BM25 vectors."""
        info = self._on(name, lambda t: self.inner.enable_sparse(t, bm25, progress=progress))
        return self._named(name, info)

    def aliases(self) -> dict[str, str]:
        """The inner store's alias table (read now)."""
        return self.table(fresh=True)

    def set_alias(self, alias: str, collection: str) -> None:
        """Create or repoint `alias` in the inner store."""
        self.inner.set_alias(alias, collection)
        self.table(fresh=True)

    def delete_alias(self, alias: str) -> None:
        """Drop `alias` in the inner store."""
        self.inner.delete_alias(alias)
        self.table(fresh=True)

    def hold_builds(self, name: str) -> Callable[[], None]:
        """Hold the index builds of the collection `name` stands for while an ingest call
        writes to it (stores that build in the background: qdrant-edge); the release."""
        hold = getattr(self.inner, "hold_builds", None)
        return _nothing if hold is None else self._on(name, hold)

    def close(self) -> None:
        """Close the inner store."""
        self.inner.close()


class TransactionalAliasedStore(AliasedStore):
    """An AliasedStore over a store with `replace_documents` (pgvector), which it keeps."""

    def replace_documents(self, name: str, doc_ids: Sequence[str], points: Sequence[Point]) -> None:
        """Replace documents in the collection `name` stands for, in one transaction."""
        inner: Any = self.inner  # not part of the VectorStore protocol
        self._on(name, lambda t: inner.replace_documents(t, doc_ids, points))


def _nothing() -> None:
    """The release of a hold on a store that has nothing to hold."""


def _is_version(name: str, bases: set[str]) -> bool:
    found = version_of(name)
    return found is not None and found[0] in bases
