"""What a collection records about itself: its provenance (as JSON) and when it was created."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from rag_appliance.errors import Conflict
from rag_appliance.store.base import Bm25Config, Provenance


def provenance_to_dict(provenance: Provenance) -> dict[str, Any]:
    """A JSON-ready dict of the provenance fields."""
    return asdict(provenance)


def provenance_from_dict(raw: Mapping[str, Any]) -> Provenance:
    """The Provenance stored by provenance_to_dict (KeyError/TypeError if it is malformed)."""
    return Provenance(
        model=str(raw["model"]),
        dimension=int(raw["dimension"]),
        distance=str(raw.get("distance", "cosine")),
        document_prefix=str(raw.get("document_prefix", "")),
    )


def bm25_to_dict(config: Bm25Config | None) -> dict[str, Any] | None:
    """A JSON-ready dict of the BM25 config (None for a dense-only collection)."""
    return None if config is None else asdict(config)


def bm25_from_dict(raw: Mapping[str, Any] | None) -> Bm25Config | None:
    """The config stored by bm25_to_dict; None (absent) is a dense-only collection.

    Collections made before sparse vectors existed have no such entry: they stay dense-only.
    """
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise TypeError(f"a BM25 config must be an object, got {raw!r}")
    defaults = Bm25Config()
    return Bm25Config(
        language=str(raw.get("language", defaults.language)),
        stemming=bool(raw.get("stemming", defaults.stemming)),
        stopwords=bool(raw.get("stopwords", defaults.stopwords)),
        k=float(raw.get("k", defaults.k)),
        b=float(raw.get("b", defaults.b)),
        avg_len=float(raw.get("avg_len", defaults.avg_len)),
    )


def provenance_conflict(name: str, stored: Provenance, requested: Provenance) -> Conflict:
    """The 409 for re-creating `name` with another model, dimension or prefix."""
    return Conflict(
        f"collection {name!r} already exists with model {stored.model!r} "
        f"(dimension {stored.dimension}, distance {stored.distance}, "
        f"document prefix {stored.document_prefix!r}); this request uses model "
        f"{requested.model!r} (dimension {requested.dimension}, distance {requested.distance}, "
        f"document prefix {requested.document_prefix!r}). Delete the collection or use "
        "another name.",
        param="collection",
    )


def utc_now() -> str:
    """The current time as ISO-8601 UTC with a `Z` suffix, to the second (created_at)."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
