"""Our Filter (store/base.py) as a PostgreSQL condition on the JSONB payload.

Each condition is one SQL/JSON path test, `payload @? '$."key" ? (...)'`, which the payload's
GIN index (jsonb_path_ops) answers for equalities. The path language has the semantics the
contract suite asserts for Qdrant, without special cases:

- dotted keys are member accessors, each segment quoted (spaces and dots inside a segment are
  one key); lax mode reaches into arrays, so a Match on a key holding a list holds if any
  element matches (tags), and a missing key or a value of another shape never matches;
- `==` compares like JSON types only: "1" is not 1, true is not 1, and numbers compare as
  numbers, so a float Match 2.0 holds for an integer payload 2 (Qdrant's [v, v] range);
- a Range is `@ >= gte && @ < lt`, which no string or boolean satisfies;
- a Match without values never holds; must_not is NOT of a condition that is never NULL, so
  a point without the key satisfies it;
- an empty Filter is no condition at all.

Values and keys are checked by qdrant_filters' helpers (the same refusals as the Qdrant adapters);
each path is a named parameter of the statement (`filter_0`, ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from psycopg import sql

from rag_appliance.store.base import Filter, Match, Range, Scalar
from rag_appliance.store.qdrant_filters import (
    check_condition,
    is_empty,
    json_path,
    match_parts,
    range_bounds,
)

PAYLOAD = sql.Identifier("payload")


@dataclass(frozen=True)
class Condition:
    """A filter as SQL: a boolean expression with named placeholders, and their values."""

    sql: sql.Composable
    params: dict[str, str]


def where(flt: Filter | None, payload: sql.Composable = PAYLOAD) -> Condition:
    """`flt` as a condition on the `payload` column (TRUE when it is empty), or
    InvalidRequest for a bad key, value or condition."""
    if flt is None or is_empty(flt):
        return Condition(sql.SQL("TRUE"), {})
    params: dict[str, str] = {}
    parts = [_condition(c, payload, params) for c in flt.must]
    parts += [sql.SQL("NOT {}").format(_condition(c, payload, params)) for c in flt.must_not]
    return Condition(sql.SQL("({})").format(sql.SQL(" AND ").join(parts)), params)


def _condition(raw: object, payload: sql.Composable, params: dict[str, str]) -> sql.Composable:
    cond = check_condition(raw)
    path = key_path(cond.key)
    if isinstance(cond, Range):
        test = _range(*range_bounds(cond))
    else:
        tests = _equalities(cond)
        if not tests:
            return sql.SQL("FALSE")  # a Match without values never holds
        test = " || ".join(tests)
    # A parameter, not a literal: a "%" in a value would read as a placeholder. PostgreSQL
    # plans each statement with its values, so the GIN index still serves the path.
    name = f"filter_{len(params)}"
    params[name] = f"{path} ? ({test})"
    return sql.SQL("({} @? {}::jsonpath)").format(payload, sql.Placeholder(name))


def key_path(key: str) -> str:
    """A dotted payload key as an SQL/JSON path, every segment quoted (InvalidRequest for empty
    segments or quotes, as for the Qdrant adapters)."""
    json_path(key)  # the shared check
    return "$" + "".join(f".{json.dumps(segment)}" for segment in key.split("."))


def _equalities(cond: Match) -> list[str]:
    parts = match_parts(cond.values)
    values: list[Scalar] = [*parts.strings, *parts.integers, *parts.booleans, *parts.numbers]
    return [f"@ == {_literal(v)}" for v in values]


def _range(gte: float | None, lt: float | None) -> str:
    tests = []
    if gte is not None:
        tests.append(f"@ >= {_literal(gte)}")
    if lt is not None:
        tests.append(f"@ < {_literal(lt)}")
    # No bound at all: any number (Qdrant's range without bounds).
    return " && ".join(tests) or '@.type() == "number"'


def _literal(value: Scalar) -> str:
    """A JSON scalar as a path literal: JSON's spelling is the path language's."""
    return json.dumps(value)
