"""POST /v1/rerank on the app with a fake scorer: shape, aliases, auth and every error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rag_appliance.app import create_app
from rag_appliance.rerank.service import Reranker
from tests.conftest import make_services, make_settings
from tests.fakes import FakeEncoder
from tests.unit.rerank.fakes import FakeScorer, fake_score, fake_tokens

QUERY = "capital of france"
DOCS = ["Berlin is a city", "Paris is the capital of France", "the capital of Spain"]


def client_for(reranker: bool = True, **sections: dict[str, Any]) -> TestClient:
    settings = make_settings(server={"ui": False, **sections.pop("server", {})}, **sections)
    services = make_services(settings, FakeEncoder())
    if reranker:
        services.reranker = Reranker(FakeScorer(), settings.rerank, "fake-reranker")
    return TestClient(create_app(settings, services))


@pytest.fixture
def client() -> Iterator[TestClient]:
    with client_for(rerank={"max_documents": 3, "aliases": ["rr"]}) as c:
        yield c


def assert_error(response: Any, status: int, type_: str, param: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"]) == (type_, param)
    assert error["message"]
    return dict(error)


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank", "/rerank"])
def test_rerank_on_every_path(client: TestClient, path: str) -> None:
    response = client.post(path, json={"model": "rr", "query": QUERY, "documents": DOCS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "model", "results", "usage"}
    assert body["model"] == "fake-reranker"
    assert [r["index"] for r in body["results"]] == [1, 2, 0]
    for r in body["results"]:
        assert set(r) == {"index", "relevance_score"}
        assert r["relevance_score"] == pytest.approx(fake_score(QUERY, DOCS[r["index"]]))
    tokens = sum(fake_tokens(QUERY, d) for d in DOCS)
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


def test_top_n_and_documents_as_cohere_objects(client: TestClient) -> None:
    body = {
        "query": QUERY,
        "documents": [{"text": d} for d in DOCS],
        "top_n": 2,
        "return_documents": True,
    }
    results = client.post("/v1/rerank", json=body).json()["results"]
    assert [(r["index"], r["document"]) for r in results] == [
        (1, {"text": DOCS[1]}),
        (2, {"text": DOCS[2]}),
    ]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"query": QUERY, "documents": []}, 400, "documents"),
        ({"query": QUERY, "documents": ["d"] * 4}, 400, "documents"),  # max_documents 3
        ({"query": QUERY, "documents": DOCS, "top_n": 0}, 400, "top_n"),
        ({"query": QUERY, "documents": DOCS, "top_n": -1}, 400, "top_n"),
        ({"query": "", "documents": DOCS}, 400, "query"),
        ({"documents": DOCS}, 400, "query"),
        ({"query": QUERY}, 400, "documents"),
        ({"query": QUERY, "documents": [3]}, 400, "documents"),
        ({"query": QUERY, "documents": DOCS, "raw_scores": True}, 400, "raw_scores"),
        ({"query": QUERY, "documents": DOCS, "foo": 1}, 400, "foo"),
        ({"query": QUERY, "documents": DOCS, "model": "nope"}, 404, "model"),
    ],
)
def test_bad_requests_get_openai_errors(
    client: TestClient, body: dict[str, Any], status: int, param: str
) -> None:
    error = assert_error(
        client.post("/v1/rerank", json=body), status, "invalid_request_error", param
    )
    if status == 404:
        assert error["code"] == "model_not_found"


def test_without_a_reranker_it_is_a_503() -> None:
    with client_for(reranker=False) as c:
        response = c.post("/v1/rerank", json={"query": QUERY, "documents": DOCS})
        error = assert_error(response, 503, "service_unavailable", None)
        assert "rerank.model" in error["message"]
        names = [m["id"] for m in c.get("/v1/models").json()["data"]]
        assert "fake-reranker" not in names


def test_models_list_the_reranker(client: TestClient) -> None:
    names = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert {"fake-reranker", "rr"} <= set(names)
    assert client.get("/v1/models/fake-reranker").status_code == 200


def test_api_keys_protect_every_rerank_path() -> None:
    with client_for(server={"api_keys": ["k"]}) as c:
        for path in ("/v1/rerank", "/v2/rerank", "/rerank"):
            body = {"query": QUERY, "documents": DOCS}
            assert c.post(path, json=body).status_code == 401
            ok = c.post(path, json=body, headers={"Authorization": "Bearer k"})
            assert ok.status_code == 200
