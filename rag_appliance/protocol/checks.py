"""Edge checks on client values (text, metadata, filters): one 400 naming the param, or nothing.

JSON lets a body carry what the engines cannot take: lone UTF-16 surrogates ("\\ud800" parses to
a str that cannot be encoded as UTF-8), integers past int64, NaN and Infinity (Python's parser
accepts them), and objects nested deep enough to break the store's recursion. These checks run
where a request enters, before anything is embedded or written.
"""

from __future__ import annotations

import json
import math
from typing import Any

from rag_appliance.errors import InvalidRequest

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Metadata nested deeper than this is refused; the store recurses once per level.
MAX_DEPTH = 32
# Values (scalars, lists and objects, keys not counted) in one metadata object.
MAX_ITEMS = 4096
INVALID = "invalid_value"


def valid_utf8(value: str) -> bool:
    """Whether the str encodes as UTF-8 (False for lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(value: str | None, param: str) -> None:
    """Refuse a string holding a lone UTF-16 surrogate (it has no UTF-8 form)."""
    if value is not None and not valid_utf8(value):
        raise InvalidRequest(
            f"'{param}' holds a lone UTF-16 surrogate: strings must be valid Unicode",
            param=param,
            code=INVALID,
        )


def check_texts(values: list[str] | None, param: str) -> None:
    """check_text on every item, naming it as param[i]."""
    for i, value in enumerate(values or ()):
        check_text(value, f"{param}[{i}]")


def check_json(
    value: Any, param: str, *, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS
) -> None:
    """Refuse JSON the store cannot hold: too deep or big, odd keys, huge ints, NaN, surrogates."""
    counter = [0]
    _walk(value, param, 0, max_depth, max_items, counter)


def _walk(value: Any, where: str, depth: int, max_depth: int, most: int, seen: list[int]) -> None:
    seen[0] += 1
    if seen[0] > most:
        raise InvalidRequest(
            f"'{where}': too large (more than {most} values)", param=where, code=INVALID
        )
    if isinstance(value, dict | list):
        if depth >= max_depth:
            raise InvalidRequest(
                f"'{where}': nested deeper than {max_depth} levels", param=where, code=INVALID
            )
        if isinstance(value, list):
            for i, item in enumerate(value):
                _walk(item, f"{where}[{i}]", depth + 1, max_depth, most, seen)
            return
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidRequest(f"'{where}': keys must be strings", param=where, code=INVALID)
            check_text(key, where)
            _walk(item, f"{where}.{key}", depth + 1, max_depth, most, seen)
        return
    check_scalar(value, where)


def check_scalar(value: Any, param: str) -> None:
    """Refuse a scalar the store cannot hold; containers and other types pass through."""
    if isinstance(value, str):
        check_text(value, param)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidRequest(
                f"'{param}': integers must fit in 64 bits (-2^63 to 2^63-1)",
                param=param,
                code=INVALID,
            )
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRequest(f"'{param}': numbers must be finite", param=param, code=INVALID)
    else:
        raise InvalidRequest(
            f"'{param}': values must be JSON strings, numbers, booleans, null, lists or objects",
            param=param,
            code=INVALID,
        )


def form_metadata(raw: Any) -> dict[str, Any]:
    """A multipart form's `metadata` field: a JSON object, checked; empty or absent: {}."""
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, str):  # a file sent under the field's name
        raise InvalidRequest("'metadata' must be a JSON object", param="metadata")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise InvalidRequest("'metadata' must be a JSON object", param="metadata") from None
    if not isinstance(value, dict):
        raise InvalidRequest("'metadata' must be a JSON object", param="metadata")
    check_json(value, "metadata")
    return value
