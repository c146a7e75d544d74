"""Edge checks (protocol/checks.py) and the request models that use them: one 400, one param."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from rag_appliance.errors import InvalidRequest
from rag_appliance.protocol.checks import (
    INT64_MAX,
    INT64_MIN,
    MAX_DEPTH,
    check_json,
    check_text,
    check_texts,
)
from rag_appliance.protocol.embeddings import EmbeddingRequest
from rag_appliance.protocol.index import IndexRequest, SearchRequest

LONE = "a\ud800b"


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"n": value}
    return value


def refused(call: Any, *args: Any, **kwargs: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        call(*args, **kwargs)
    assert caught.value.status == 400
    return caught.value


def param_of(model: Any, body: dict[str, Any]) -> str | None:
    """The param of the 400: ours, or pydantic's loc for constrained strings it cannot decode."""
    try:
        model.model_validate(body)
    except InvalidRequest as exc:
        return exc.param
    except ValidationError as exc:
        first = exc.errors()[0]
        assert first["type"] == "string_unicode"
        return ".".join(str(p) for p in first["loc"])
    raise AssertionError("accepted")


def test_check_text_refuses_only_lone_surrogates() -> None:
    check_text("caf\u00e9 \U0001f600", "input")  # a real pair is fine
    check_text(None, "input")
    assert refused(check_text, LONE, "input").param == "input"
    assert refused(check_text, "\udc00", "q").code == "invalid_value"
    assert refused(check_texts, ["ok", "ok", LONE], "texts").param == "texts[2]"


@pytest.mark.parametrize(
    ("value", "param"),
    [
        ({"a": 2**64}, "m.a"),
        ({"a": INT64_MAX + 1}, "m.a"),
        ({"a": INT64_MIN - 1}, "m.a"),
        ({"a": [1, math.nan]}, "m.a[1]"),
        ({"a": {"b": math.inf}}, "m.a.b"),
        ({"a": LONE}, "m.a"),
        ({LONE: 1}, "m"),
        ({1: 1}, "m"),
        ({"a": object()}, "m.a"),
        (nested(MAX_DEPTH + 1), "m" + ".n" * MAX_DEPTH),
        (nested(128), "m" + ".n" * MAX_DEPTH),
    ],
)
def test_check_json_refusals_name_the_path(value: Any, param: str) -> None:
    assert refused(check_json, value, "m").param == param


def test_check_json_accepts_ordinary_metadata_up_to_the_limits() -> None:
    check_json({"a": INT64_MAX, "b": INT64_MIN, "c": 1.5, "d": [True, None, "x"]}, "m")
    check_json(nested(MAX_DEPTH), "m")
    check_json({"a": list(range(98))}, "m", max_items=100)  # 98 + the list + the object
    assert refused(check_json, {"a": list(range(99))}, "m", max_items=100).param == "m.a[98]"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": LONE}, "input"),
        ({"input": ["ok", LONE]}, "input[1]"),
        ({"input": "ok", "model": LONE}, "model"),
    ],
)
def test_embedding_request_refuses_surrogates(body: dict[str, Any], param: str) -> None:
    assert refused(EmbeddingRequest.model_validate, body).param == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"texts": [LONE]}, "texts[0]"),
        ({"texts": ["a", "b"], "ids": ["x", LONE]}, "ids[1]"),
        ({"texts": ["a", "b"], "ids": ["x", "x"]}, "ids[1]"),
        ({"texts": ["a"], "metadata": {"k": 2**64}}, "metadata.k"),
        # Strings with length limits: pydantic itself refuses them (a 400 naming the field).
        ({"documents": [{"text": "ok"}, {"text": LONE}]}, "documents.1.text"),
        ({"documents": [{"id": LONE, "text": "t"}]}, "documents.0.id"),
        ({"documents": [{"source": LONE, "text": "t"}]}, "documents[0].source"),
        (
            {"documents": [{"text": "ok"}, {"text": "t", "metadata": nested(128)}]},
            "documents[1].metadata" + ".n" * MAX_DEPTH,
        ),
        ({"documents": [{"text": "t", "metadata": {"x": math.nan}}]}, "documents[0].metadata.x"),
        (
            {
                "documents": [
                    {"id": "a", "text": "1"},
                    {"id": "b", "text": "2"},
                    {"id": "a", "text": "3"},
                ]
            },
            "documents[2].id",
        ),
    ],
)
def test_index_request_refuses_the_whole_batch(body: dict[str, Any], param: str) -> None:
    assert param_of(IndexRequest, {"collection": "kb"} | body) == param


def test_index_request_collection_and_documents_without_ids() -> None:
    assert param_of(IndexRequest, {"collection": LONE, "texts": ["a"]}) == "collection"
    dup = refused(
        IndexRequest.model_validate, {"collection": "kb", "ids": ["x", "x"], "texts": ["a", "b"]}
    )
    assert dup.code == "duplicate_id" and "'x'" in dup.message
    # Documents without ids take their content hash: the same text twice is not a duplicate id.
    body = IndexRequest.model_validate({"collection": "kb", "texts": ["same", "same"]})
    assert len(body.to_documents()) == 2


@pytest.mark.parametrize("threshold", [math.nan, math.inf, -math.inf])
def test_search_threshold_must_be_finite(threshold: float) -> None:
    with pytest.raises(ValidationError) as caught:
        SearchRequest.model_validate(
            {"collection": "kb", "query": "q", "score_threshold": threshold}
        )
    assert caught.value.errors()[0]["loc"] == ("score_threshold",)


def test_search_request_refuses_surrogates() -> None:
    assert param_of(SearchRequest, {"collection": "kb", "query": LONE}) == "query"
    assert param_of(SearchRequest, {"collection": LONE, "query": "q"}) == "collection"
