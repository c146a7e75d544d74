"""The rerank request -> plain params (refusals by name) and the response body's shape."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from rag_appliance.errors import InvalidRequest
from rag_appliance.rerank.protocol import REFUSED, RerankParams, RerankRequest, rerank_response
from rag_appliance.rerank.service import RerankResult


def parse(**body: Any) -> RerankParams:
    return RerankRequest.model_validate({"query": "q", "documents": ["a"], **body}).to_params()


def test_strings_and_cohere_text_objects_become_plain_texts() -> None:
    params = parse(documents=["first", {"text": "second", "title": "kept aside"}, "third"])
    assert params.documents == ["first", "second", "third"]
    assert params.query == "q"
    assert params.top_n is None
    assert params.return_documents is False  # Cohere's and Infinity's default


def test_top_n_and_return_documents_pass_through() -> None:
    params = parse(top_n=3, return_documents=True, model="m")
    assert (params.top_n, params.return_documents) == (3, True)


@pytest.mark.parametrize(
    "body",
    [
        {"documents": ["a"]},  # no query
        {"query": "q"},  # no documents
        {"query": "q", "documents": "a"},  # a string, not a list
        {"query": "q", "documents": [1]},
        {"query": "q", "documents": [{"title": "no text"}]},
        {"query": 5, "documents": ["a"]},
        {"query": "q", "documents": ["a"], "top_n": "many"},
    ],
)
def test_malformed_bodies_fail_validation(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RerankRequest.model_validate(body)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_known_unsupported_parameters_are_refused_by_name(name: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse(**{name: 5 if name != "rank_fields" else ["title"]})
    assert (info.value.param, info.value.code) == (name, "unsupported_parameter")
    assert REFUSED[name] in info.value.message


@pytest.mark.parametrize("value", [None, False])
def test_unsupported_parameters_left_unset_are_accepted(value: Any) -> None:
    assert parse(raw_scores=value, max_tokens_per_doc=None, rank_fields=None).documents == ["a"]


def test_unknown_parameters_are_refused() -> None:
    with pytest.raises(InvalidRequest) as info:
        parse(temperature=0.5)
    assert info.value.param == "temperature"
    assert info.value.message == "Unrecognized request argument supplied: temperature"


def test_response_shape_without_and_with_documents() -> None:
    result = RerankResult(ranking=[(2, 0.9), (0, 0.25)], tokens=17)
    params = RerankParams("q", ["d0", "d1", "d2"], top_n=2, return_documents=False)
    body = rerank_response(result, "fake-reranker", params)
    assert set(body) == {"id", "model", "results", "usage"}
    assert body["id"].startswith("rerank-")
    assert body["model"] == "fake-reranker"
    assert body["results"] == [
        {"index": 2, "relevance_score": 0.9},
        {"index": 0, "relevance_score": 0.25},
    ]
    assert body["usage"] == {"prompt_tokens": 17, "total_tokens": 17}
    with_docs = rerank_response(
        result, "fake-reranker", RerankParams("q", ["d0", "d1", "d2"], 2, return_documents=True)
    )
    assert [r["document"] for r in with_docs["results"]] == [{"text": "d2"}, {"text": "d0"}]
    assert with_docs["id"] != body["id"]
