"""The OpenAPI document matches the server: statuses, schemas, request constraints, auth."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient

from rag_appliance.app import create_app
from rag_appliance.settings import load_settings
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.conftest import make_services
from tests.fakes import FakeEncoder, FakeGenerator

KEY = "sk-openapi-test-0123456789"
ERROR_REF = "#/components/schemas/ErrorResponse"
AUTH = {"Authorization": f"Bearer {KEY}"}


def spec_for(**server: Any) -> dict[str, Any]:
    return create_app(load_settings(server={"ui": False, **server})).openapi()


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return spec_for(api_keys=[KEY])


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Iterator[TestClient]:
    settings = load_settings(server={"ui": False, "api_keys": [KEY]})
    store = QdrantEdgeStore(tmp_path_factory.mktemp("openapi") / "db")
    services = make_services(
        settings, FakeEncoder(), store, generator=FakeGenerator(), tokenizer=tokenizer
    )
    with TestClient(create_app(settings, services)) as c:
        yield c


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, op in item.items():
            yield path, method, op


def valid(spec: dict[str, Any], model: str, instance: Any) -> bool:
    root = {"$ref": f"#/components/schemas/{model}", "components": spec["components"]}
    return bool(jsonschema_rs.Draft202012Validator(root).is_valid(instance))


def test_every_route_is_documented(spec: dict[str, Any]) -> None:
    paths = set(spec["paths"])
    for path in (
        "/v1/embeddings",
        "/v1/index",
        "/v1/index/upload",
        "/v1/search",
        "/v1/collections",
        "/v1/collections/{name}/documents/{doc_id}",
        "/v1/collections/{name}/sparse",
        "/v1/models/{model_id}",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/rerank",
        "/v2/rerank",
        "/rerank",
        "/health",
        "/ready",
        "/metrics",
    ):
        assert path in paths, path


def test_no_422_anywhere(spec: dict[str, Any]) -> None:
    for path, method, op in operations(spec):
        assert "422" not in op["responses"], (method, path)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert "ValidationError" not in spec["components"]["schemas"]


def test_every_status_has_a_schema(spec: dict[str, Any]) -> None:
    for path, method, op in operations(spec):
        responses = op["responses"]
        assert "200" in responses, (method, path)
        for status, response in responses.items():
            content = response.get("content")
            assert content, (method, path, status)
            schemas = [m["schema"] for m in content.values()]
            assert all(schemas), (method, path, status)
            if status != "200" and path != "/ready":
                assert schemas == [{"$ref": ERROR_REF}], (method, path, status)


def test_validation_and_auth_statuses(spec: dict[str, Any]) -> None:
    for path, method, op in operations(spec):
        statuses = set(op["responses"])
        if "requestBody" in op or op.get("parameters"):
            assert "400" in statuses, (method, path)
        if "requestBody" in op:
            assert "413" in statuses, (method, path)
        if path in ("/health", "/ready"):
            assert "security" not in op and "401" not in statuses
        else:
            assert op["security"] == [{"bearer": []}], (method, path)
            assert {"401", "403", "429"} <= statuses, (method, path)
    scheme = spec["components"]["securitySchemes"]["bearer"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"


def test_without_keys_no_auth_is_documented() -> None:
    spec = spec_for()
    assert "securitySchemes" not in spec["components"]
    for path, method, op in operations(spec):
        assert "security" not in op and "401" not in op["responses"], (method, path)


def test_domain_errors_per_route(spec: dict[str, Any]) -> None:
    def statuses(path: str, method: str = "post") -> set[str]:
        return set(spec["paths"][path][method]["responses"])

    assert {"404", "409", "503"} <= statuses("/v1/search")
    assert {"409", "503"} <= statuses("/v1/index")
    assert {"404", "429", "503"} <= statuses("/v1/chat/completions")
    assert "404" in statuses("/v1/collections/{name}", "get")
    ready = spec["paths"]["/ready"]["get"]["responses"]["503"]["content"]
    assert ready["application/json"]["schema"] == {"$ref": "#/components/schemas/Ready"}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_streams_are_documented(spec: dict[str, Any], path: str) -> None:
    content = spec["paths"][path]["post"]["responses"]["200"]["content"]
    assert set(content) == {"application/json", "text/event-stream"}
    event = content["text/event-stream"]["schema"]
    assert event["required"] == ["data"] and event["properties"]["data"]["type"] == "string"


def test_embedding_input_constraints(spec: dict[str, Any]) -> None:
    ok = [{"input": "a"}, {"input": ["a", "b"]}]
    bad = [{"input": ""}, {"input": []}, {"input": [""]}, {"input": [1, 2]}, {}]
    assert all(valid(spec, "EmbeddingRequest", b) for b in ok)
    assert not any(valid(spec, "EmbeddingRequest", b) for b in bad)
    # Token ids are in the document only where the server takes them.
    settings = load_settings(server={"ui": False}, embedding={"accept_token_ids": True})
    with_ids = create_app(settings).openapi()
    assert valid(with_ids, "EmbeddingRequest", {"input": [[1, 2]]})
    assert not valid(spec, "EmbeddingRequest", {"input": [[1, 2]]})


def test_search_query_must_have_text(spec: dict[str, Any]) -> None:
    assert valid(spec, "SearchRequest", {"collection": "c", "query": "q"})
    for query in ("", "   "):
        assert not valid(spec, "SearchRequest", {"collection": "c", "query": query})
    assert not valid(spec, "SearchRequest", {"collection": "c", "query": "q", "top_k": 101})


INDEX_OK = [
    {"collection": "c", "documents": [{"text": "t"}]},
    {"collection": "c", "texts": ["t"], "ids": ["a"]},
    {"collection": "c", "texts": ["t"], "documents": None},
    {"collection": "c", "documents": [{"text": "t"}], "texts": None, "ids": None},
]
INDEX_BAD = [
    ({"collection": "c"}, "documents"),
    ({"collection": "c", "documents": None, "texts": None}, "documents"),
    ({"collection": "c", "documents": [{"text": "t"}], "texts": ["t"]}, "texts"),
    ({"collection": "c", "documents": [{"text": "t"}], "ids": ["a"]}, "ids"),
    ({"collection": "c", "texts": []}, "documents"),
]


def test_index_body_needs_one_form(spec: dict[str, Any]) -> None:
    assert all(valid(spec, "IndexRequest", body) for body in INDEX_OK)
    for body, _ in INDEX_BAD:
        assert not valid(spec, "IndexRequest", body), body


@pytest.mark.parametrize(("body", "param"), INDEX_BAD)
def test_server_refuses_what_the_document_refuses(
    client: TestClient, body: dict[str, Any], param: str
) -> None:
    r = client.post("/v1/index", json=body, headers=AUTH)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == param and "Content-Type" not in error["message"]


def test_chat_request_is_closed(spec: dict[str, Any]) -> None:
    base = {"messages": [{"role": "user", "content": "hi"}]}
    assert valid(spec, "ChatCompletionRequest", base | {"tools": None})
    assert not valid(spec, "ChatCompletionRequest", base | {"tools": [{"type": "function"}]})
    assert not valid(spec, "ChatCompletionRequest", base | {"unknown_field": 1})
    assert not valid(spec, "CompletionRequest", {"prompt": "p", "unknown_field": 1})
    assert valid(spec, "RerankRequest", {"query": "q", "documents": ["d"], "raw_scores": False})


def test_answers_match_their_schemas(client: TestClient, spec: dict[str, Any]) -> None:
    checks = [
        ("Health", client.get("/health")),
        ("ModelList", client.get("/v1/models", headers=AUTH)),
        ("EmbeddingList", client.post("/v1/embeddings", json={"input": ["a"]}, headers=AUTH)),
        ("ErrorResponse", client.post("/v1/embeddings", json={"input": ""}, headers=AUTH)),
        ("ErrorResponse", client.get("/v1/models")),
        ("CollectionList", client.get("/v1/collections", headers=AUTH)),
    ]
    for model, response in checks:
        assert valid(spec, model, response.json()), (model, response.text)


# Values pydantic's lax mode would coerce: the document says integer, boolean, string.
LAX = [
    ("/v1/search", {"collection": "c", "query": "q", "rerank": 0}, "rerank"),
    ("/v1/search", {"collection": "c", "query": "q", "top_k": "3"}, "top_k"),
    (
        "/v1/index",
        {"collection": "c", "texts": ["t"], "chunking": {"max_tokens": "64"}},
        "chunking",
    ),
    ("/v1/completions", {"prompt": [[False]]}, "prompt"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "n": 1.0}, "n"),
    ("/v1/embeddings", {"input": "x", "truncate": "yes"}, "truncate"),
]


@pytest.mark.parametrize(("path", "body", "param"), LAX)
def test_no_type_coercion(client: TestClient, path: str, body: dict[str, Any], param: str) -> None:
    r = client.post(path, json=body, headers=AUTH)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_chat_rules_across_fields(spec: dict[str, Any], client: TestClient) -> None:
    no_content = {"messages": [{"role": "user"}]}
    bare_top = {"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}
    for body in (no_content, bare_top):
        assert not valid(spec, "ChatCompletionRequest", body)
        r = client.post("/v1/chat/completions", json=body, headers=AUTH)
        assert r.status_code == 400, r.text
    assistant = {"messages": [{"role": "assistant"}]}
    assert valid(spec, "ChatCompletionRequest", assistant)
    assert valid(spec, "ChatCompletionRequest", bare_top | {"logprobs": True})


@pytest.mark.parametrize("name", ["kb", "a.b-c_1", "-x", ".hidden", "a b", "é", "x" * 65])
def test_collection_name_pattern_is_the_stores(spec: dict[str, Any], name: str) -> None:
    from rag_appliance.errors import InvalidRequest
    from rag_appliance.store.validation import check_collection_name

    try:
        check_collection_name(name)
        accepted = True
    except InvalidRequest:
        accepted = False
    assert valid(spec, "SearchRequest", {"collection": name, "query": "q"}) is accepted
    param = spec["paths"]["/v1/collections/{name}"]["get"]["parameters"][0]
    assert (
        param["schema"]["pattern"]
        == spec["components"]["schemas"]["SearchRequest"]["properties"]["collection"]["pattern"]
    )
