"""The VectorStore protocol and its plain data types (no backend imports here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

Scalar = str | int | float | bool

# Payload indexes every adapter creates with a collection: the ingestion pipeline filters by
# these constantly, and every search and listing filters on its commit flag.
KEYWORD_INDEXES = ("doc_id", "content_hash")
INTEGER_INDEXES = ("chunk_index",)
BOOL_INDEXES = ("committed",)


@dataclass(frozen=True)
class Provenance:
    """What a collection's vectors mean; recorded at creation, checked on every write/search."""

    model: str
    dimension: int
    distance: str = "cosine"
    document_prefix: str = ""


@dataclass(frozen=True)
class CollectionInfo:
    """A collection's name, provenance and size."""

    name: str
    provenance: Provenance
    points_count: int
    created_at: str  # ISO-8601 UTC


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
    """One stored vector: a UUID string id, a float32 vector and a JSON payload."""

    id: str
    vector: np.ndarray
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """A search result: the point id, its similarity score and payload."""

    id: str
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class Record:
    """A point without its vector, as scroll returns it."""

    id: str
    payload: dict[str, Any]


class VectorStore(Protocol):
    """A vector database holding named collections of points; every method is blocking."""

    def create_collection(self, name: str, provenance: Provenance) -> CollectionInfo: ...
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
        vector: np.ndarray,
        top_k: int,
        flt: Filter | None = None,
        score_threshold: float | None = None,
    ) -> list[Hit]: ...
    def scroll(
        self, name: str, flt: Filter | None, limit: int, offset: str | None = None
    ) -> tuple[list[Record], str | None]: ...
    def close(self) -> None: ...
