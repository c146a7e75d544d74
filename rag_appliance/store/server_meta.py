"""What the server adapter records in a collection's metadata, and how long it trusts a copy.

Provenance lives in Qdrant itself, as the collection's metadata (under the "rag_appliance" key),
so every replica of the appliance sharing one Qdrant sees the same model/dimension (and BM25
config) for a collection. Collections without that key were not made by the appliance: they are
left out of list_collections and refused (Conflict) by the other methods.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rag_appliance.errors import Conflict
from rag_appliance.store.base import Bm25Config, Provenance
from rag_appliance.store.provenance import (
    bm25_from_dict,
    bm25_to_dict,
    provenance_from_dict,
    provenance_to_dict,
)

META_KEY = "rag_appliance"
_FORMAT = 1
# How long a dense-only collection's metadata is trusted: another replica may add BM25 vectors.
DENSE_META_TTL_S = 5.0


@dataclass(frozen=True)
class Meta:
    """What the collection metadata records."""

    provenance: Provenance
    created_at: str
    bm25: Bm25Config | None = None  # None: dense only (made before sparse vectors existed)


def metadata(meta: Meta) -> dict[str, Any]:
    """The collection metadata that records `meta`."""
    return {
        META_KEY: {
            "format": _FORMAT,
            **provenance_to_dict(meta.provenance),
            "created_at": meta.created_at,
            "bm25": bm25_to_dict(meta.bm25),
        }
    }


def from_metadata(name: str, metadata: Mapping[str, Any] | None) -> Meta:
    """The appliance's entry in collection `name`'s metadata; Conflict if there is none."""
    raw = (metadata or {}).get(META_KEY)
    if isinstance(raw, Mapping):
        try:
            return Meta(
                provenance_from_dict(raw), str(raw["created_at"]), bm25_from_dict(raw.get("bm25"))
            )
        except (KeyError, TypeError, ValueError):
            pass
    raise Conflict(
        f"collection {name!r} exists on the Qdrant server but was not created by "
        "rag-appliance (it has no provenance metadata)",
        param="collection",
    )


class MetaCache:
    """Each collection's metadata as last read. Provenance never changes while a collection
    exists, so it is kept to spare a round trip; a dense-only collection's only for
    DENSE_META_TTL_S, since enable_sparse (maybe another replica's) changes it."""

    def __init__(self) -> None:
        self._meta: dict[str, Meta] = {}
        self._read: dict[str, float] = {}  # name -> when its metadata was read

    def get(self, name: str) -> Meta | None:
        """The cached metadata, None if there is none or it may be stale."""
        cached = self._meta.get(name)
        if cached is not None and (
            cached.bm25 is not None
            or time.monotonic() - self._read.get(name, 0.0) < DENSE_META_TTL_S
        ):
            return cached
        return None

    def put(self, name: str, meta: Meta, read_at: float | None = None) -> None:
        """Remember `meta`, read at `read_at` (time.monotonic(); now if None)."""
        self._meta[name] = meta
        self._read[name] = time.monotonic() if read_at is None else read_at

    def drop(self, name: str) -> None:
        """Forget the collection's metadata (it may have been deleted or recreated)."""
        self._meta.pop(name, None)
