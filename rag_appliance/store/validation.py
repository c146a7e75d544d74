"""Argument checks shared by the adapters: names, provenance, ids, limits, vectors, payloads.

Done here, before any backend sees the arguments, so that every adapter refuses the same inputs
with the same errors (the backends disagree otherwise).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from rag_appliance.errors import CollectionNotFound, Conflict, InvalidRequest
from rag_appliance.store.base import Point, Provenance

# ASCII only and a letter/digit first: names become directory names (edge) and collection names
# (server), so `.`/`_`/`-` first (hidden files, `..`, option-like names) are refused too.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)

DISTANCES = frozenset({"cosine"})


def check_collection_name(name: str) -> str:
    """The name itself, or InvalidRequest if it is not 1-64 of [A-Za-z0-9_.-] starting alnum."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequest(
            f"invalid collection name {name!r}: use 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit",
            param="collection",
        )
    return name


def not_found(name: str) -> CollectionNotFound:
    """The 404 for a collection that does not exist."""
    return CollectionNotFound(f"collection {name!r} does not exist", param="collection")


def check_provenance(provenance: Provenance) -> None:
    """InvalidRequest unless the provenance describes vectors this store can hold."""
    if provenance.distance not in DISTANCES:
        raise InvalidRequest(
            f"unsupported distance {provenance.distance!r}: only 'cosine' is supported",
            param="distance",
        )
    if isinstance(provenance.dimension, bool) or not isinstance(provenance.dimension, int):
        raise InvalidRequest("the vector dimension must be an integer", param="dimension")
    if not 1 <= provenance.dimension <= 65536:
        raise InvalidRequest(
            f"invalid vector dimension {provenance.dimension}: must be 1..65536", param="dimension"
        )


def point_id(raw: str) -> str:
    """The canonical (lowercase, hyphenated) form of a UUID point id, or InvalidRequest."""
    try:
        return str(uuid.UUID(raw))
    except (ValueError, TypeError, AttributeError):
        raise InvalidRequest(f"point ids must be UUID strings, got {raw!r}", param="id") from None


def scroll_offset(offset: str | None) -> str | None:
    """A scroll offset (the next point's id) checked for shape, or InvalidRequest."""
    if offset is None:
        return None
    try:
        return str(uuid.UUID(offset))
    except (ValueError, TypeError, AttributeError):
        raise InvalidRequest(f"invalid scroll offset {offset!r}", param="offset") from None


def check_limit(value: int, param: str) -> int:
    """A positive result count, or InvalidRequest."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(f"{param} must be a positive integer, got {value!r}", param=param)
    return value


def vector(raw: np.ndarray, dimension: int, collection: str) -> np.ndarray:
    """`raw` as a finite 1-D float32 array of the collection's dimension.

    A wrong dimension is a Conflict: the vector came from another model than the collection's.
    """
    arr = np.asarray(raw, dtype=np.float32)
    if arr.ndim != 1 or arr.shape[0] != dimension:
        got = arr.shape[0] if arr.ndim == 1 else f"shape {arr.shape}"
        raise Conflict(
            f"collection {collection!r} holds {dimension}-dimensional vectors; got {got}",
            param="collection",
        )
    if not np.isfinite(arr).all():
        raise InvalidRequest("vectors must not contain NaN or infinity", param="vector")
    return arr


def query_vector(raw: np.ndarray, dimension: int, collection: str) -> list[float]:
    """A search vector checked by `vector`, as the list of floats the Qdrant bindings take."""
    values: list[float] = vector(raw, dimension, collection).tolist()
    return values


def matrix(points: Sequence[Point], dimension: int, collection: str) -> np.ndarray:
    """The points' vectors stacked as an (n, dimension) float32 matrix, each one checked."""
    return np.stack([vector(p.vector, dimension, collection) for p in points])


def check_payload(payload: Any, param: str = "payload") -> dict[str, Any]:
    """The payload if it is JSON (string keys, finite numbers), else InvalidRequest.

    Checked here because the backends disagree otherwise: each accepts some non-JSON values
    (bytes, numpy scalars, NaN, integer keys) that the other refuses.
    """
    if not isinstance(payload, dict) or not _is_json(payload):
        raise InvalidRequest(
            "a payload must be a JSON object: string keys; strings, finite numbers, booleans, "
            "null, lists and objects as values",
            param=param,
        )
    return payload


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def dense_vector(vector: Any) -> np.ndarray | None:
    """A Qdrant record's dense vector as float32 (it comes alone, or under the name "" beside
    the named BM25 vector); None when the record was read without vectors."""
    if isinstance(vector, dict):
        vector = vector.get("")
    if vector is None:
        return None
    return np.asarray(vector, dtype=np.float32)
