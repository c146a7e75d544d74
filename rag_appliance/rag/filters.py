"""User-facing metadata filters -> the store's Filter."""

from __future__ import annotations

from typing import Any

from rag_appliance.errors import InvalidRequest
from rag_appliance.store.base import Filter, Match, Range

# Payload fields addressable by their own name; any other key is a metadata field.
TOP_LEVEL = frozenset({"doc_id", "source"})
_SCALARS = (str, int, float, bool)


def parse_filter(raw: dict[str, Any] | None, param: str = "filter") -> list[Match | Range]:
    """{"lang": "en", "tags": ["a", "b"], "year": {"gte": 2020, "lt": 2025}} -> conditions."""
    if not raw:
        return []
    conditions: list[Match | Range] = []
    for key, value in raw.items():
        if not isinstance(key, str) or not key:
            raise InvalidRequest("filter keys must be non-empty strings", param=param)
        field = key if key in TOP_LEVEL or key.startswith("metadata.") else f"metadata.{key}"
        conditions.append(_condition(field, value, f"{param}.{key}"))
    return conditions


def _condition(field: str, value: Any, param: str) -> Match | Range:
    if isinstance(value, _SCALARS):
        return Match(field, (value,))
    if isinstance(value, list):
        if not value or not all(isinstance(v, _SCALARS) for v in value):
            raise InvalidRequest(
                "a filter list must hold at least one string, number or boolean", param=param
            )
        return Match(field, tuple(value))
    if isinstance(value, dict):
        unknown = set(value) - {"gte", "lt"}
        numbers = all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()
        )
        if unknown or not value or not numbers:
            raise InvalidRequest(
                'a range filter is {"gte": number, "lt": number} (either or both)', param=param
            )
        return Range(field, gte=value.get("gte"), lt=value.get("lt"))
    raise InvalidRequest(
        "a filter value must be a string, number, boolean, a list of those, or a range",
        param=param,
    )


def with_conditions(conditions: list[Match | Range], *extra: Match | Range) -> Filter:
    """A Filter requiring all the given conditions."""
    return Filter(must=(*conditions, *extra))
