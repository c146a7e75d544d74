"""The VectorStore protocol and its plain data types (no backend imports here)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

Scalar = str | int | float | bool

# Payload indexes every adapter creates with a collection: the ingestion pipeline filters by
# these constantly, and every search and listing filters on its commit flag.
KEYWORD_INDEXES = ("doc_id", "content_hash")
INTEGER_INDEXES = ("chunk_index",)
BOOL_INDEXES = ("committed",)
# The payload key `group_by_document` groups hits by.
DOCUMENT_KEY = "doc_id"

SearchMode = Literal["dense", "sparse", "hybrid"]
FusionMethod = Literal["rrf", "dbsf", "weighted"]


@dataclass(frozen=True)
class Provenance:
    """What a collection's vectors mean; recorded at creation, checked on every write/search."""

    model: str
    dimension: int
    distance: str = "cosine"
    document_prefix: str = ""


@dataclass(frozen=True)
class Bm25Config:
    """How a collection turns text into BM25 sparse vectors; fixed when it is created.

    `language` picks the stopword list and the Snowball stemmer (lowercase English name, e.g.
    "english", "french"); `stemming`/`stopwords` switch those off. k, b and avg_len are BM25's
    term-frequency saturation, length normalisation and expected chunk length in tokens.
    """

    language: str = "english"
    stemming: bool = True
    stopwords: bool = True
    k: float = 1.2
    b: float = 0.75
    avg_len: float = 256.0


# What a new collection gets unless told otherwise: English BM25 with Qdrant's defaults.
DEFAULT_BM25 = Bm25Config()


@dataclass(frozen=True)
class CollectionInfo:
    """A collection's name, provenance, size and sparse-vector config (None: dense only)."""

    name: str
    provenance: Provenance
    points_count: int
    created_at: str  # ISO-8601 UTC
    bm25: Bm25Config | None = None
    # Set when `name` is an alias: the physical collection it points to (its current version).
    version: str | None = None


@dataclass(frozen=True)
class Match:
    """Payload `key` equals one of `values` (dotted keys reach into nested objects)."""

    key: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Range:
    """Payload `key` is a number within [gte, lt)."""

    key: str
    gte: float | None = None
    lt: float | None = None


@dataclass(frozen=True)
class Filter:
    """All `must` conditions hold and no `must_not` condition holds."""

    must: tuple[Match | Range, ...] = ()
    must_not: tuple[Match | Range, ...] = ()


@dataclass(frozen=True)
class Point:
    """One stored point: a UUID string id, a float32 vector, a JSON payload and its text.

    In a collection with BM25 (CollectionInfo.bm25), `text_for_sparse` is indexed as the point's
    sparse vector; None (or text without a single term) leaves the point out of sparse search.
    Dense-only collections ignore it.
    """

    id: str
    vector: np.ndarray
    payload: dict[str, Any] = field(default_factory=dict)
    text_for_sparse: str | None = None


@dataclass(frozen=True)
class Hit:
    """A search result: the point id, its similarity score and payload."""

    id: str
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class Record:
    """A point as scroll returns it: its dense vector only when asked for (`with_vectors`)."""

    id: str
    payload: dict[str, Any]
    vector: np.ndarray | None = None


class VectorStore(Protocol):
    """A vector database holding named collections of points; every method is blocking."""

    def create_collection(
        self, name: str, provenance: Provenance, *, bm25: Bm25Config | None = DEFAULT_BM25
    ) -> CollectionInfo: ...
    def get_collection(self, name: str) -> CollectionInfo: ...
    def list_collections(self) -> list[CollectionInfo]: ...
    def delete_collection(self, name: str) -> None: ...
    def upsert(self, name: str, points: Sequence[Point]) -> None: ...
    def set_payload(self, name: str, flt: Filter, payload: dict[str, Any]) -> None: ...
    def delete(self, name: str, flt: Filter) -> None: ...
    def count(self, name: str, flt: Filter | None = None) -> int: ...
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
    ) -> list[Hit]: ...
    # In id order from `offset`; `with_vectors` adds each point's dense vector (float32), for
    # copying a collection to another store without embedding it again.
    def scroll(
        self,
        name: str,
        flt: Filter | None,
        limit: int,
        offset: str | None = None,
        *,
        with_vectors: bool = False,
    ) -> tuple[list[Record], str | None]: ...
    # Gives a dense-only collection BM25 vectors computed from its points' payload "text", in
    # place (no-op when it has them); `progress` gets the number of points done, page by page.
    def enable_sparse(
        self,
        name: str,
        bm25: Bm25Config = DEFAULT_BM25,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> CollectionInfo: ...
    # Aliases: a name standing for a collection, switched atomically (blue/green re-indexing).
    # `aliases` maps each alias to its collection; `set_alias` creates or repoints one in one
    # step (404 for a missing collection, Conflict when a collection has the alias's name);
    # deleting a collection drops the aliases pointing to it.
    def aliases(self) -> dict[str, str]: ...
    def set_alias(self, alias: str, collection: str) -> None: ...
    def delete_alias(self, alias: str) -> None: ...
    def close(self) -> None: ...
