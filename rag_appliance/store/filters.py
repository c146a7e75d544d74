"""Backend-neutral helpers shared by the Qdrant adapters: validation, provenance, filter parts."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from rag_appliance.errors import Conflict, InvalidRequest
from rag_appliance.store.base import Filter, Match, Point, Provenance, Range, Scalar

# ASCII only and a letter/digit first: names become directory names (edge) and collection names
# (server), so `.`/`_`/`-` first (hidden files, `..`, option-like names) are refused too.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)
# JSON-path segments Qdrant parses unquoted; anything else is quoted so keys with spaces or dots
# address one payload key instead of failing to parse (or reaching into the wrong object).
_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)

DISTANCES = frozenset({"cosine"})
# Payload indexes every collection gets: the ingestion pipeline filters by these constantly.
KEYWORD_INDEXES = ("doc_id", "content_hash")
INTEGER_INDEXES = ("chunk_index",)
# Every search and listing filters on the pipeline's commit flag.
BOOL_INDEXES = ("committed",)


def check_collection_name(name: str) -> str:
    """The name itself, or InvalidRequest if it is not 1-64 of [A-Za-z0-9_.-] starting alnum."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequest(
            f"invalid collection name {name!r}: use 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit",
            param="collection",
        )
    return name


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


def utc_now() -> str:
    """The current time as ISO-8601 UTC with a `Z` suffix, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


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


def json_path(key: str) -> str:
    """A dotted payload key as a Qdrant JSON path, quoting segments that need it."""
    segments = key.split(".") if isinstance(key, str) else [""]
    if any(not s or '"' in s for s in segments):
        raise InvalidRequest(
            f"invalid filter key {key!r}: use dot-separated names without quotes", param="filter"
        )
    return ".".join(s if _PLAIN_SEGMENT.fullmatch(s) else f'"{s}"' for s in segments)


@dataclass(frozen=True)
class MatchParts:
    """A Match's values split by the Qdrant condition each kind needs.

    Qdrant matches keywords and integers (homogeneous lists only) and booleans; floats are
    matched as the closed range [v, v], which also holds for an integer payload of equal value.
    """

    strings: tuple[str, ...] = ()
    integers: tuple[int, ...] = ()
    booleans: tuple[bool, ...] = ()
    numbers: tuple[float, ...] = ()

    @property
    def empty(self) -> bool:
        """True when there is no value at all (the Match can never hold)."""
        return not (self.strings or self.integers or self.booleans or self.numbers)


def match_parts(values: Sequence[Scalar]) -> MatchParts:
    """Split a Match's values by kind; InvalidRequest for values that are not scalars."""
    strings: list[str] = []
    integers: list[int] = []
    booleans: list[bool] = []
    numbers: list[float] = []
    for value in values:
        # bool before int: True is an int to Python but a distinct JSON type to Qdrant.
        if isinstance(value, bool):
            booleans.append(value)
        elif isinstance(value, int):
            integers.append(value)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidRequest("filter values must be finite numbers", param="filter")
            numbers.append(value)
        elif isinstance(value, str):
            strings.append(value)
        else:
            raise InvalidRequest(
                f"filter values must be strings, numbers or booleans, got {value!r}",
                param="filter",
            )
    return MatchParts(
        tuple(dict.fromkeys(strings)),
        tuple(dict.fromkeys(integers)),
        tuple(dict.fromkeys(booleans)),
        tuple(dict.fromkeys(numbers)),
    )


def range_bounds(cond: Range) -> tuple[float | None, float | None]:
    """The Range's (gte, lt) as floats, or InvalidRequest for non-finite bounds."""
    bounds: list[float | None] = []
    for bound in (cond.gte, cond.lt):
        if bound is None:
            bounds.append(None)
        elif isinstance(bound, bool) or not isinstance(bound, int | float):
            raise InvalidRequest("range bounds must be numbers", param="filter")
        elif not math.isfinite(bound):
            raise InvalidRequest("range bounds must be finite numbers", param="filter")
        else:
            bounds.append(float(bound))
    return bounds[0], bounds[1]


def is_empty(flt: Filter | None) -> bool:
    """True for None or a Filter without conditions (it matches every point)."""
    return flt is None or not (flt.must or flt.must_not)


def check_condition(cond: object) -> Match | Range:
    """The condition if it is a Match or a Range, else InvalidRequest."""
    if not isinstance(cond, Match | Range):
        raise InvalidRequest(f"unsupported filter condition {cond!r}", param="filter")
    return cond
