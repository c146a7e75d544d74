"""The HTTP edge with a fake model: routes, auth, limits and the one error path."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from rag_appliance.app import _INPUT_SHAPES, _validation_body, create_app
from tests.conftest import make_services, make_settings
from tests.fakes import FakeEncoder


def client_for(encoder: FakeEncoder | None = None, **sections: dict[str, Any]) -> TestClient:
    settings = make_settings(**sections)
    return TestClient(create_app(settings, make_services(settings, encoder or FakeEncoder())))


@pytest.fixture
def client() -> Iterator[TestClient]:
    with client_for() as c:
        yield c


def assert_error(response: Any, status: int, param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    return error


def test_embeddings_float_and_base64(client: TestClient) -> None:
    body = {"model": "fake-model", "input": ["abc", "de"]}
    floats = client.post("/v1/embeddings", json=body).json()
    b64 = client.post("/v1/embeddings", json=body | {"encoding_format": "base64"}).json()
    assert floats["object"] == "list" and floats["model"] == "fake-model"
    assert floats["usage"] == {"prompt_tokens": 9, "total_tokens": 9}
    for f, b in zip(floats["data"], b64["data"], strict=True):
        decoded = np.frombuffer(base64.b64decode(b["embedding"]), dtype="<f4")
        np.testing.assert_allclose(decoded, f["embedding"], rtol=1e-6)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"input": ""}, 400, "input[0]"),
        ({"input": []}, 400, "input"),
        ({"input": 3.5}, 400, "input"),
        ({"input": ["a", 1]}, 400, "input"),
        ({"input": "a", "model": "nope"}, 404, "model"),
        ({"input": "a", "encoding_format": "int8"}, 400, "encoding_format"),
        ({"input": "a", "dimensions": 5}, 400, "dimensions"),
        ({"input": ["a"] * 2049}, 400, "input"),
        ({"input": "z" * 100, "truncate": False}, 400, "input[0]"),
        ({"model": "fake-model"}, 400, "input"),
    ],
)
def test_bad_requests(client: TestClient, body: dict[str, Any], status: int, param: str) -> None:
    assert_error(client.post("/v1/embeddings", json=body), status, param)


def test_unknown_model_code(client: TestClient) -> None:
    error = assert_error(client.post("/v1/embeddings", json={"input": "a", "model": "x"}), 404)
    assert error["code"] == "model_not_found"


def test_malformed_json_and_wrong_content_type(client: TestClient) -> None:
    r = client.post("/v1/embeddings", content=b"{bad", headers={"content-type": "application/json"})
    assert "not valid JSON" in assert_error(r, 400)["message"]
    r = client.post(
        "/v1/embeddings", content=b'{"input": "a"}', headers={"content-type": "text/plain"}
    )
    assert_error(r, 400)
    assert_error(client.post("/v1/embeddings", json=["a", "b"]), 400)


def test_unknown_route_and_method(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing"), 404)
    assert_error(client.get("/v1/embeddings"), 405)


def test_405_allows_every_method_of_the_path(client: TestClient) -> None:
    # GET and DELETE are two routes on one path: Allow names both (Starlette names one).
    r = client.put("/v1/collections/kb")
    assert_error(r, 405)
    assert set(r.headers["allow"].split(", ")) >= {"GET", "DELETE"}
    assert client.post("/v1/embeddings/x").status_code == 404


def test_body_limit() -> None:
    with client_for(server={"max_body_bytes": 2048}) as c:
        error = assert_error(c.post("/v1/embeddings", json={"input": "x" * 4096}), 413)
        assert error["code"] == "request_too_large"
        # Without Content-Length (chunked), the limit still holds while reading.
        chunks = iter([b'{"input": "', b"x" * 3000, b'"}'])
        r = c.post("/v1/embeddings", content=chunks, headers={"content-type": "application/json"})
        assert_error(r, 413)
        assert c.post("/v1/embeddings", json={"input": "small"}).status_code == 200


def test_api_keys() -> None:
    with client_for(server={"api_keys": ["s3cret", "other"]}) as c:
        body = {"input": "a"}
        error = assert_error(c.post("/v1/embeddings", json=body), 401)
        assert error["code"] == "invalid_api_key"
        bad = c.post("/v1/embeddings", json=body, headers={"Authorization": "Bearer nope"})
        assert_error(bad, 401)
        assert_error(c.get("/v1/models"), 401)
        ok = c.post("/v1/embeddings", json=body, headers={"Authorization": "Bearer other"})
        assert ok.status_code == 200
        assert c.get("/health").status_code == 200  # liveness stays open


def test_model_failure_is_a_clean_500_and_service_continues() -> None:
    failing = FakeEncoder(fail_on=3 + ord("!") % 900)
    with client_for(failing) as c:
        error = assert_error(c.post("/v1/embeddings", json={"input": ["ok", "boom!"]}), 500)
        assert "CUDA" not in error["message"] and "secret" not in error["message"]
        assert c.post("/v1/embeddings", json={"input": ["fine"]}).status_code == 200


def test_models_health_ready_metrics(client: TestClient) -> None:
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    assert models["data"][0]["id"] == "fake-model"
    assert client.get("/v1/models/fake-alias").json()["id"] == "fake-alias"
    assert_error(client.get("/v1/models/gpt-4"), 404, "model")
    assert client.get("/health").json() == {"status": "ok"}
    client.post("/v1/embeddings", json={"input": ["a", "b"]})
    ready = client.get("/ready").json()
    assert ready["status"] == "ready"
    assert ready["embedding"]["dimension"] == 8
    assert ready["embedding"]["engine"]["items"] == 2
    metrics = client.get("/metrics").text
    assert "rag_embedding_forward_passes_total 1.0" in metrics
    assert "rag_embedding_items_total 2.0" in metrics


def test_token_ids_are_refused_by_default_with_a_pointer_to_text() -> None:
    with client_for() as c:
        for ids in ([5, 6, 7], [[5, 6], [7]]):
            error = assert_error(c.post("/v1/embeddings", json={"input": ids}), 400, "input")
            assert error["code"] == "token_ids_not_accepted"
            assert error["type"] == "invalid_request_error"
            assert "check_embedding_ctx_length=False" in error["message"]
            assert "embedding.accept_token_ids" in error["message"]


def test_token_ids_accepted_when_enabled() -> None:
    enc = FakeEncoder()
    with client_for(enc, embedding={"accept_token_ids": True}) as c:
        by_ids = c.post("/v1/embeddings", json={"input": enc.tokenize(["abc"])[0]})
        by_text = c.post("/v1/embeddings", json={"input": "abc"})
    assert by_ids.status_code == 200, by_ids.text
    assert by_ids.json()["data"] == by_text.json()["data"]


@pytest.mark.parametrize(
    ("errors", "message", "param", "code"),
    [
        ([], "Invalid request: the body must be a JSON object", None, None),
        (
            [{"loc": ("body", 7), "msg": "x", "type": "json_invalid"}],
            "Invalid request: the body is not valid JSON",
            None,
            None,
        ),
        (
            [{"loc": ("body",), "msg": "x", "type": "model_attributes_type"}],
            "Invalid request: the body must be a JSON object",
            None,
            None,
        ),
        (
            [{"loc": ("body",), "msg": "Field required", "type": "missing"}],
            "Invalid request: the body must be a JSON object",
            None,
            None,
        ),
        (
            [{"loc": ("body", "input", "list[str]", 1), "msg": "x", "type": "string_type"}],
            _INPUT_SHAPES,
            "input",
            "invalid_type",
        ),
        (
            [
                {"loc": ("body", "messages", 0, "role"), "msg": "bad role", "type": "literal"},
                {"loc": ("body", "model"), "msg": "second problem", "type": "string_type"},
            ],
            "Invalid 'messages.0.role': bad role",
            "messages",
            None,
        ),
        (
            [{"loc": ("query", "limit"), "msg": "not an int", "type": "int_parsing"}],
            "Invalid 'query.limit': not an int",
            "query",
            None,
        ),
    ],
)
def test_validation_body_branches(
    errors: list[dict[str, Any]], message: str, param: str | None, code: str | None
) -> None:
    error = _validation_body(errors)["error"]
    assert error["message"].startswith(message)
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)


def test_validation_errors_over_http_use_the_first_problem(client: TestClient) -> None:
    error = assert_error(
        client.post("/v1/embeddings", json={"input": "a", "dimensions": 0, "encoding_format": 1}),
        400,
    )
    assert error["param"] in {"dimensions", "encoding_format"}
    assert error["message"].startswith(f"Invalid '{error['param']}': ")
    missing = assert_error(
        client.post("/v1/embeddings", content=b"", headers={"content-type": "application/json"}),
        400,
    )
    assert missing["message"].startswith("Invalid request: ")


def test_start_up_objects_are_frozen_out_of_the_cyclic_collector_while_serving() -> None:
    # A full collection over everything start-up made stalls the event loop ~0.5 s (gc.freeze).
    import gc
    import weakref

    class Node:
        peer: Any = None

    gc.unfreeze()  # a session-wide live server (tests/integration) froze its own start-up
    assert gc.get_freeze_count() == 0
    with client_for() as c:
        assert gc.get_freeze_count() > 10_000
        assert c.get("/health").status_code == 200
        cycle = Node()
        cycle.peer = cycle
        gone = weakref.ref(cycle)
        del cycle
        gc.collect()
        assert gone() is None  # garbage made while serving is still collected
    assert gc.get_freeze_count() == 0  # given back at shutdown
