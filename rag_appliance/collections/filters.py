"""User-facing metadata filters -> store conditions, validated once where a request enters."""

from __future__ import annotations

import math
from typing import Any

from rag_appliance.errors import InvalidRequest
from rag_appliance.protocol.checks import INT64_MAX, INT64_MIN, valid_utf8
from rag_appliance.store.base import Match, Range

# Payload fields addressable by their own name; any other key is a metadata field.
TOP_LEVEL = frozenset({"doc_id", "source"})
PARAM = "filter"
_SCALARS = (str, int, float, bool)


def parse_filter(raw: Any) -> list[Match | Range]:
    """{"lang": "en", "tags": ["a", "b"], "year": {"gte": 2020, "lt": 2025}} -> conditions.

    Every error names the request field `filter` as its param (callers nested in another field
    add their prefix, e.g. "rag."); the message names the offending key.
    """
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise InvalidRequest("'filter' must be a JSON object", param=PARAM)
    conditions: list[Match | Range] = []
    for key, value in raw.items():
        conditions.append(_condition(_field(key), value, key))
    return conditions


def _field(key: Any) -> str:
    # The store reads keys as dotted paths: refuse what it cannot address, here, with one param.
    if not isinstance(key, str) or not key:
        raise InvalidRequest("filter keys must be non-empty strings", param=PARAM)
    if not valid_utf8(key):
        raise InvalidRequest(
            f"invalid filter key {key!r}: it holds a lone UTF-16 surrogate", param=PARAM
        )
    if any(not part or '"' in part for part in key.split(".")):
        raise InvalidRequest(
            f"invalid filter key {key!r}: use dot-separated names without quotes", param=PARAM
        )
    return key if key in TOP_LEVEL or key.startswith("metadata.") else f"metadata.{key}"


def _condition(field: str, value: Any, key: str) -> Match | Range:
    if isinstance(value, _SCALARS):
        return Match(field, (_finite(value, key),))
    if isinstance(value, list):
        if not value or not all(isinstance(v, _SCALARS) for v in value):
            raise InvalidRequest(
                f"invalid filter {key!r}: a list needs at least one string, number or boolean",
                param=PARAM,
            )
        return Match(field, tuple(_finite(v, key) for v in value))
    if isinstance(value, dict):
        unknown = set(value) - {"gte", "lt"}
        numbers = all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()
        )
        if unknown or not value or not numbers:
            raise InvalidRequest(
                f'invalid filter {key!r}: a range is {{"gte": number, "lt": number}} '
                "(either or both)",
                param=PARAM,
            )
        gte, lt = (_finite(value[b], key) if b in value else None for b in ("gte", "lt"))
        return Range(field, gte=gte, lt=lt)
    raise InvalidRequest(
        f"invalid filter {key!r}: a value must be a string, number, boolean, a list of those, "
        "or a range",
        param=PARAM,
    )


def _finite(value: Any, key: str) -> Any:
    # Python's JSON parser accepts NaN, Infinity, any integer and lone surrogates ("\\ud800");
    # no payload can match them, and the store fails on them: refused here.
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequest(f"invalid filter {key!r}: numbers must be finite", param=PARAM)
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise InvalidRequest(
            f"invalid filter {key!r}: integers must fit in 64 bits (-2^63 to 2^63-1)", param=PARAM
        )
    if isinstance(value, str) and not valid_utf8(value):
        raise InvalidRequest(
            f"invalid filter {key!r}: a string holds a lone UTF-16 surrogate", param=PARAM
        )
    return value
