"""Our Filter (store/base.py) as a Milvus boolean expression.

Values are written into the expression as literals: Milvus Lite has no expression templates
(`filter_params`), so strings are quoted here, escaping what both parsers read as special
(backslash, double quote, newline, carriage return, tab). Keys are JSON paths into the `payload`
field, each segment a quoted string (`payload["metadata"]["my key"]`), refused by the same rule
as on Qdrant (no empty segment, no quote). The semantics are Qdrant's, as the contract suite
asserts them:

- Match: the key equals one of the values, or holds a list with one of them
  (`json_contains_any`); booleans are matched as the payload's marker strings (milvus_rows), so
  True never equals 1; a float equals an integer of the same value; no values never holds;
- Range: [gte, lt) over numbers; strings and booleans are excluded with `like "%"` (which holds
  for strings only), so that the condition is true or false and never unknown;
- every JSON condition starts with `exists`: Milvus Lite evaluates a missing key as null with
  three-valued logic, where `not (null)` is null and the row would be lost from a must_not;
- the mirrored keys (milvus_rows.MIRRORS) are matched on their scalar columns when the value
  has the column's type, and through the JSON payload only on rows flagged `irregular` (and
  only when the collection has such rows: `irregular` is asked by the caller).

Limits (Milvus has no equivalent): a Range on a key holding a list never holds (Qdrant's holds
when an element is in range), and an integer Match also holds for an equal float payload. On
Milvus Lite, a must_not Range over a key that holds a list or an object leaves that row out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rag_appliance.errors import InvalidRequest
from rag_appliance.store.base import Filter, Range
from rag_appliance.store.milvus_rows import (
    FALSE,
    ID,
    INT64_MAX,
    INT64_MIN,
    IRREGULAR,
    MIRRORS,
    PAYLOAD,
    TRUE,
    MirrorKind,
    encode_string,
)
from rag_appliance.store.qdrant_filters import (
    MatchParts,
    check_condition,
    is_empty,
    json_path,
    match_parts,
    range_bounds,
)

# Expressions that never / always hold: no point has an empty id.
NOTHING = f'{ID} == ""'
EVERYTHING = f'{ID} != ""'
_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def to_expr(flt: Filter | None, irregular: bool = False) -> str:
    """The expression for `flt` ("" for no filter: every point), or InvalidRequest.

    `irregular`: whether the collection may hold rows flagged irregular (milvus_rows); False
    leaves their JSON fallback out of conditions on mirrored keys.
    """
    if flt is None or is_empty(flt):
        return ""
    parts = [_condition(c, irregular) for c in flt.must]
    parts += [f"not {_condition(c, irregular)}" for c in flt.must_not]
    return " and ".join(parts)


def touches_mirrors(flt: Filter | None) -> bool:
    """Whether `flt` has a condition on a mirrored key (then `irregular` matters)."""
    if flt is None:
        return False
    return any(getattr(c, "key", None) in MIRRORS for c in (*flt.must, *flt.must_not))


def quote(value: str) -> str:
    """A string literal both Milvus and Milvus Lite parse back to `value`."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest("filter strings must be valid Unicode", param="filter") from None
    return f'"{value.translate(_ESCAPES)}"'


def _condition(raw: object, irregular: bool) -> str:
    """One must/must_not condition as a parenthesised expression."""
    cond = check_condition(raw)
    json_path(cond.key)  # InvalidRequest for keys Qdrant refuses too
    path = PAYLOAD + "".join(f"[{quote(s)}]" for s in cond.key.split("."))
    kind = MIRRORS.get(cond.key)
    if isinstance(cond, Range):
        gte, lt = range_bounds(cond)
        json = _json_range(path, gte, lt)
        column = _column_range(cond.key, gte, lt) if kind == "int" else None
    else:
        parts = match_parts(cond.values)
        json = _json_match(path, parts)
        column = None if kind is None else _column_match(cond.key, kind, parts)
    if kind is None:
        return json
    # A mirrored key: its column, and the JSON payload for the rows the column cannot hold.
    options = [c for c in (column, f"({IRREGULAR} == true and {json})" if irregular else None) if c]
    if not options:
        return f"({NOTHING})"
    return options[0] if len(options) == 1 else f"({' or '.join(options)})"


def _json_match(path: str, parts: MatchParts) -> str:
    """A Match on a JSON path: the value itself, or a list holding it."""
    groups = [
        [quote(encode_string(s)) for s in parts.strings],
        [str(i) for i in parts.integers],
        [_number(f) for f in parts.numbers],
        [quote(TRUE if b else FALSE) for b in parts.booleans],
    ]
    options: list[str] = []
    for group in filter(None, groups):
        options += [f"{path} == {literal}" for literal in group]
        # The key holds a list with one of the values (Qdrant matches any element).
        options.append(f"json_contains_any({path}, [{', '.join(group)}])")
    if not options:
        return f"({NOTHING})"
    return f"(exists {path} and ({' or '.join(options)}))"


def _json_range(path: str, gte: float | None, lt: float | None) -> str:
    """A Range on a JSON path, over numbers only."""
    conds = [f"exists {path}", f'not ({path} like "%")']
    if gte is not None:
        conds.append(f"{path} >= {_number(gte)}")
    if lt is not None:
        conds.append(f"{path} < {_number(lt)}")
    return f"({' and '.join(conds)})"


def _column_match(key: str, kind: MirrorKind, parts: MatchParts) -> str | None:
    """A Match on a mirror column, for the values of its type (None: there are none)."""
    values: Sequence[str]
    if kind == "str":
        values = [quote(s) for s in parts.strings]
    elif kind == "bool":
        values = ["true" if b else "false" for b in parts.booleans]
    else:
        # A float equals an integer of the same value (Qdrant matches it as [v, v]).
        integral = [int(f) for f in parts.numbers if f.is_integer() and _in_int64(f)]
        values = [str(i) for i in dict.fromkeys([*parts.integers, *integral]) if _in_int64(i)]
    if not values:
        return None
    # `is not null` first: a null column is false here, never unknown.
    return f"({key} is not null and {key} in [{', '.join(values)}])"


def _column_range(key: str, gte: float | None, lt: float | None) -> str | None:
    """A Range on the integer mirror column (None: nothing can be in it)."""
    # Integer bounds for an integer column (x >= 2.5 is x >= 3), so no server compares an
    # INT64 field with a float; bounds past int64 are no bound, or leave nothing.
    low = None if gte is None else math.ceil(gte)
    high = None if lt is None else math.ceil(lt)
    if (low is not None and low > INT64_MAX) or (high is not None and high <= INT64_MIN):
        return None
    conds = [f"{key} is not null"]
    if low is not None and low > INT64_MIN:
        conds.append(f"{key} >= {low}")
    if high is not None and high <= INT64_MAX:
        conds.append(f"{key} < {high}")
    return f"({' and '.join(conds)})"


def _number(value: float) -> str:
    """A float literal: repr keeps every digit, and exponents ("1e-05") parse on both sides."""
    return repr(float(value))


def _in_int64(value: float) -> bool:
    """Whether an INT64 column can hold the value."""
    return INT64_MIN <= value <= INT64_MAX
