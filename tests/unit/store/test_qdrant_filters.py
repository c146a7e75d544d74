"""The shared Filter -> Qdrant translator, on both bindings' dialects.

Each translated filter is read back into plain JSON (from qdrant-edge's objects through their
properties, from qdrant-client's pydantic models through model_dump) and compared as JSON text,
which tells `true` from `1` and `2.0` from `2`: exactly what Qdrant's matching distinguishes.
What the filters then match on a real engine is the contract suite's (test_contract.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import qdrant_edge as qe
from pydantic import BaseModel

from rag_appliance.errors import InvalidRequest
from rag_appliance.store.base import Filter, Match, Range
from rag_appliance.store.qdrant_edge import EDGE_FILTERS
from rag_appliance.store.qdrant_filters import QdrantDialect, json_path, to_qdrant
from rag_appliance.store.qdrant_server import SERVER_FILTERS


def edge_plain(obj: Any) -> Any:
    """A qdrant-edge filter object as the JSON Qdrant's REST API would spell it."""
    if isinstance(obj, qe.Filter):
        parts = {"must": obj.must, "should": obj.should, "must_not": obj.must_not}
        return {k: [edge_plain(c) for c in v] for k, v in parts.items() if v is not None}
    if isinstance(obj, qe.FieldCondition):
        out: dict[str, Any] = {"key": obj.key}
        if obj.match is not None:
            out["match"] = edge_plain(obj.match)
        if obj.range is not None:
            out["range"] = edge_plain(obj.range)
        return out
    if isinstance(obj, qe.MatchValue):
        return {"value": obj.value}
    if isinstance(obj, qe.MatchAny):
        return {"any": list(obj.value)}
    if isinstance(obj, qe.RangeFloat):
        bounds = {"gte": obj.gte, "gt": obj.gt, "lte": obj.lte, "lt": obj.lt}
        return {k: v for k, v in bounds.items() if v is not None}
    raise TypeError(f"unexpected {obj!r}")


def server_plain(obj: Any) -> Any:
    """A qdrant-client model as JSON (unset fields left out)."""
    assert isinstance(obj, BaseModel)
    return obj.model_dump(exclude_none=True)


DIALECTS: dict[str, tuple[QdrantDialect[Any, Any], Callable[[Any], Any]]] = {
    "edge": (EDGE_FILTERS, edge_plain),
    "server": (SERVER_FILTERS, server_plain),
}


@pytest.fixture(params=sorted(DIALECTS))
def translate(request: pytest.FixtureRequest) -> Callable[[Filter | None], str | None]:
    """Our Filter -> the dialect's filter -> JSON text (None for no filter)."""
    dialect, plain = DIALECTS[request.param]

    def run(flt: Filter | None) -> str | None:
        out = to_qdrant(flt, dialect)
        return None if out is None else json.dumps(plain(out), sort_keys=True)

    return run


def as_json(expected: dict[str, Any]) -> str:
    return json.dumps(expected, sort_keys=True)


def field(key: str, **condition: Any) -> dict[str, Any]:
    return {"key": key, **condition}


def value(v: Any) -> dict[str, Any]:
    return {"value": v}


def equals(v: float) -> dict[str, Any]:
    return {"gte": v, "lte": v}


MATCHES: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("one string", ("a",), field("k", match=value("a"))),
    ("strings, deduplicated", ("a", "b", "a"), field("k", match={"any": ["a", "b"]})),
    ("one integer", (3,), field("k", match=value(3))),
    ("integers", (3, 5), field("k", match={"any": [3, 5]})),
    ("a boolean is a JSON boolean", (True,), field("k", match=value(True))),
    ("false", (False,), field("k", match=value(False))),
    (
        "both booleans",
        (True, False),
        {"should": [field("k", match=value(True)), field("k", match=value(False))]},
    ),
    ("a float is a [v, v] range", (2.5,), field("k", range=equals(2.5))),
    ("a whole float stays a float", (2.0,), field("k", range=equals(2.0))),
    (
        "floats",
        (2.5, 7.5),
        {"should": [field("k", range=equals(2.5)), field("k", range=equals(7.5))]},
    ),
    (
        "mixed kinds: one condition per kind, OR-ed",
        (1, "1", True, 2.0, "x", 4),
        {
            "should": [
                field("k", match={"any": ["1", "x"]}),
                field("k", match={"any": [1, 4]}),
                field("k", match=value(True)),
                field("k", range=equals(2.0)),
            ]
        },
    ),
    ("no values never holds", (), field("k", match={"any": []})),
]


@pytest.mark.parametrize(
    ("label", "values", "expected"), MATCHES, ids=[label for label, _, _ in MATCHES]
)
def test_match(
    translate: Callable[[Filter | None], str | None],
    label: str,
    values: tuple[Any, ...],
    expected: dict[str, Any],
) -> None:
    assert translate(Filter(must=(Match("k", values),))) == as_json({"must": [expected]}), label


RANGES: list[tuple[Range, dict[str, Any]]] = [
    (Range("k", gte=4, lt=9), {"gte": 4.0, "lt": 9.0}),
    (Range("k", gte=1.5), {"gte": 1.5}),
    (Range("k", lt=3), {"lt": 3.0}),
    (Range("k"), {}),
]


@pytest.mark.parametrize(("cond", "expected"), RANGES)
def test_range(
    translate: Callable[[Filter | None], str | None], cond: Range, expected: dict[str, Any]
) -> None:
    assert translate(Filter(must=(cond,))) == as_json({"must": [field("k", range=expected)]})


def test_must_and_must_not(translate: Callable[[Filter | None], str | None]) -> None:
    flt = Filter(
        must=(Match("doc_id", ("d0",)), Range("chunk_index", gte=6)),
        must_not=(Match("metadata.lang", ("fr",)),),
    )
    assert translate(flt) == as_json(
        {
            "must": [
                field("doc_id", match=value("d0")),
                field("chunk_index", range={"gte": 6.0}),
            ],
            "must_not": [field("metadata.lang", match=value("fr"))],
        }
    )
    only_not = Filter(must_not=(Match("doc_id", ("d0",)),))
    assert translate(only_not) == as_json({"must_not": [field("doc_id", match=value("d0"))]})


def test_no_conditions_is_no_filter(translate: Callable[[Filter | None], str | None]) -> None:
    assert translate(None) is None
    assert translate(Filter()) is None


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("doc_id", "doc_id"),
        ("metadata.lang", "metadata.lang"),
        ("a-b_C.d1", "a-b_C.d1"),
        ("metadata.my key", 'metadata."my key"'),
        ("x.y z.w", 'x."y z".w'),
        ("a/b", '"a/b"'),
    ],
)
def test_keys_become_json_paths(
    translate: Callable[[Filter | None], str | None], key: str, path: str
) -> None:
    assert json_path(key) == path
    assert translate(Filter(must=(Match(key, ("v",)),))) == as_json(
        {"must": [field(path, match=value("v"))]}
    )


def test_non_ascii_segments_are_quoted() -> None:
    # Not round-tripped: qdrant-edge reads a key back in its own spelling of the parsed path,
    # which leaves unicode letters unquoted (the same path to the engine).
    assert json_path("ünï.ok") == '"ünï".ok'


INVALID: list[tuple[str, Any]] = [
    ("empty key", Match("", ("x",))),
    ("empty segment", Match("a..b", ("x",))),
    ("trailing dot", Match("trailing.", ("x",))),
    ("leading dot", Match(".lead", ("x",))),
    ("quote in key", Match('a"b', ("x",))),
    ("key not a string", Match(1, ("x",))),  # type: ignore[arg-type]
    ("NaN value", Match("k", (float("nan"),))),
    ("infinite value", Match("k", (float("inf"),))),
    ("None value", Match("k", (None,))),  # type: ignore[arg-type]
    ("list value", Match("k", (["a"],))),  # type: ignore[arg-type]
    ("NaN bound", Range("k", gte=float("nan"))),
    ("infinite bound", Range("k", lt=float("inf"))),
    ("boolean bound", Range("k", gte=True)),
    ("string bound", Range("k", lt="3")),  # type: ignore[arg-type]
    ("not a condition", "doc_id = 1"),
]


@pytest.mark.parametrize(("label", "cond"), INVALID, ids=[label for label, _ in INVALID])
def test_invalid_conditions(
    translate: Callable[[Filter | None], str | None], label: str, cond: Any
) -> None:
    for flt in (Filter(must=(cond,)), Filter(must_not=(cond,))):
        with pytest.raises(InvalidRequest) as err:
            translate(flt)
        assert err.value.param == "filter", label
