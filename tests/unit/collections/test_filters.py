"""User filters -> store conditions: the accepted forms, and every error under one param."""

from __future__ import annotations

import math
from typing import Any

import pytest

from rag_appliance.collections.filters import parse_filter
from rag_appliance.errors import InvalidRequest
from rag_appliance.store.base import Match, Range


def test_forms_become_conditions() -> None:
    raw = {
        "lang": "en",
        "tags": ["a", "b"],
        "year": {"gte": 2020, "lt": 2025},
        "score": {"gte": 0.5},
        "draft": False,
        "doc_id": "faq-1",
        "source": "report.pdf",
        "author.name": "Ada",
        "metadata.team": "ops",
    }
    assert parse_filter(raw) == [
        Match("metadata.lang", ("en",)),
        Match("metadata.tags", ("a", "b")),
        Range("metadata.year", gte=2020, lt=2025),
        Range("metadata.score", gte=0.5, lt=None),
        Match("metadata.draft", (False,)),
        Match("doc_id", ("faq-1",)),
        Match("source", ("report.pdf",)),
        Match("metadata.author.name", ("Ada",)),
        Match("metadata.team", ("ops",)),
    ]


@pytest.mark.parametrize("raw", [None, {}])
def test_no_filter_is_no_condition(raw: dict[str, Any] | None) -> None:
    assert parse_filter(raw) == []


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"topic": {"near": 1}}, "topic"),
        ({"topic": {}}, "topic"),
        ({"topic": {"gte": "2020"}}, "topic"),
        ({"topic": {"gte": True}}, "topic"),
        ({"topic": []}, "topic"),
        ({"topic": [1, [2]]}, "topic"),
        ({"topic": None}, "topic"),
        ({"topic": {"a": 1, "gte": 1}}, "topic"),
        ({"x": math.nan}, "x"),
        ({"x": [1.0, math.inf]}, "x"),
        ({"x": {"lt": -math.inf}}, "x"),
        ({"": 1}, None),
        ({"a..b": 1}, "a..b"),
        ({".a": 1}, ".a"),
        ({'a"b': 1}, 'a"b'),
        (["not", "an", "object"], None),
    ],
)
def test_errors_name_the_filter_param_and_the_key(raw: Any, names: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_filter(raw)
    assert caught.value.param == "filter"
    if names is not None:
        assert repr(names) in caught.value.message


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"a": 18446744073709551616}, "a"),
        ({"a": 2**63}, "a"),
        ({"a": [1, -(2**63) - 1]}, "a"),
        ({"a": {"gte": 2**64}}, "a"),
        ({"a": "x\ud800"}, "a"),
        ({"a": ["ok", "\udfff"]}, "a"),
        ({"a\ud800": 1}, "a\ud800"),
    ],
)
def test_values_the_store_cannot_hold_are_refused(raw: Any, names: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_filter(raw)
    assert caught.value.param == "filter"
    assert repr(names) in caught.value.message
    caught.value.message.encode()  # the error itself must be serialisable


def test_int64_bounds_are_accepted() -> None:
    assert len(parse_filter({"a": 2**63 - 1, "b": {"gte": -(2**63)}})) == 2
