"""Our Filter (store/base.py) as a Qdrant filter: one translator for both Qdrant bindings.

qdrant-edge (embedded) and qdrant-client (server) speak the same filter language through
different model classes, so the translation is written once here against a `QdrantDialect`: the
constructors of one binding, which each adapter defines next to its own imports. This module
imports neither binding.

What the translation decides (for both bindings):

- keys: a dotted payload key is a JSON path, each segment quoted unless Qdrant parses it bare, so
  keys with spaces or dots address one payload key; empty segments and quotes are refused;
- Match: values are split by kind, since Qdrant matches keywords and integers only in
  homogeneous lists: strings and integers each become one MatchValue/MatchAny, each boolean a
  MatchValue, each float the closed range [v, v] (which also holds for an integer payload of
  equal value); several kinds are OR-ed (`should`); no values at all is an empty MatchAny,
  which never holds;
- Range: [gte, lt) as floats; non-finite bounds and values are refused;
- an empty Filter is None: no filter, every point.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from rag_appliance.errors import InvalidRequest
from rag_appliance.store.base import Filter, Match, Range, Scalar

# JSON-path segments Qdrant parses unquoted; anything else is quoted so keys with spaces or dots
# address one payload key instead of failing to parse (or reaching into the wrong object).
_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)

FilterT = TypeVar("FilterT")
CondT = TypeVar("CondT")


@dataclass(frozen=True)
class QdrantDialect(Generic[FilterT, CondT]):
    """One binding's constructors: `CondT` is its condition type, `FilterT` its Filter class.

    Every constructor but `filter` returns a condition; `key` is already a JSON path.
    """

    match_value: Callable[[str, str | int], CondT]  # key equals one string or integer
    match_any: Callable[[str, list[str] | list[int]], CondT]  # key equals one of these
    match_bool: Callable[[str, bool], CondT]  # key is this JSON boolean
    range: Callable[[str, float | None, float | None], CondT]  # gte <= key < lt
    equals: Callable[[str, float], CondT]  # gte == lte: a float compared as a number
    any_of: Callable[[list[CondT]], CondT]  # a Filter(should=...) nested as a condition
    filter: Callable[[list[CondT] | None, list[CondT] | None], FilterT]  # must, must_not


def to_qdrant(flt: Filter | None, dialect: QdrantDialect[FilterT, CondT]) -> FilterT | None:
    """Our Filter in `dialect` (None when it has no conditions), or InvalidRequest."""
    if flt is None or is_empty(flt):
        return None
    must = [_condition(c, dialect) for c in flt.must]
    must_not = [_condition(c, dialect) for c in flt.must_not]
    return dialect.filter(must or None, must_not or None)


def _condition(raw: object, dialect: QdrantDialect[FilterT, CondT]) -> CondT:
    cond = check_condition(raw)
    key = json_path(cond.key)
    if isinstance(cond, Range):
        gte, lt = range_bounds(cond)
        return dialect.range(key, gte, lt)
    parts = match_parts(cond.values)
    options: list[CondT] = []
    if parts.strings:
        options.append(_match(dialect, key, list(parts.strings)))
    if parts.integers:
        options.append(_match(dialect, key, list(parts.integers)))
    options += [dialect.match_bool(key, flag) for flag in parts.booleans]
    options += [dialect.equals(key, number) for number in parts.numbers]
    if parts.empty:
        options.append(dialect.match_any(key, []))
    return options[0] if len(options) == 1 else dialect.any_of(options)


def _match(
    dialect: QdrantDialect[FilterT, CondT], key: str, values: list[str] | list[int]
) -> CondT:
    return (
        dialect.match_value(key, values[0]) if len(values) == 1 else dialect.match_any(key, values)
    )


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
