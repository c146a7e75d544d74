"""Cross-origin safety at the HTTP edge: browser writes from other origins are refused (403)
unless server.cors_origins allows them; CORS headers and preflights for the allowed ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rag_appliance.app import create_app
from rag_appliance.errors import SettingsError
from rag_appliance.settings import ServerSettings, load_settings
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.conftest import make_services, make_settings
from tests.fakes import FakeEncoder

EVIL = "https://evil.example"
APP = "https://app.example.com"
EMBED = {"model": "fake-model", "input": "abc"}
FILES = [("files", ("notes.txt", b"Goats graze on the windy island.", "text/plain"))]


class Edge:
    """A test client with its fake encoder and embedded store, to see what got through."""

    def __init__(self, tmp: Path, tokenizer: Any, origins: list[str]) -> None:
        settings = make_settings(generation={"enabled": False})
        # Validated, not model_copy'd: the validator normalizes what CORSMiddleware compares.
        server = ServerSettings.model_validate(
            settings.server.model_dump() | {"cors_origins": origins}
        )
        settings = settings.model_copy(update={"server": server})
        self.encoder = FakeEncoder()
        self.store = QdrantEdgeStore(tmp / "db")
        services = make_services(settings, self.encoder, self.store, tokenizer=tokenizer)
        self.client = TestClient(create_app(settings, services))

    def upload(self, headers: dict[str, str]) -> Any:
        return self.client.post(
            "/v1/index/upload", data={"collection": "kb"}, files=FILES, headers=headers
        )

    def untouched(self) -> bool:
        return not self.encoder.batches and not self.store.list_collections()


@pytest.fixture
def edge(tmp_path: Path, tokenizer: Any) -> Iterator[Edge]:
    e = Edge(tmp_path, tokenizer, [])
    with e.client:
        yield e


@pytest.fixture
def allowing(tmp_path: Path, tokenizer: Any) -> Iterator[Edge]:
    e = Edge(tmp_path, tokenizer, [APP + "/"])  # a trailing slash as people write it
    with e.client:
        yield e


def assert_refused(response: Any) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "cross_origin_request"
    assert "server.cors_origins" in error["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL},
        {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://ui.testserver", "Sec-Fetch-Site": "same-site"},
        {"Origin": "null"},
        {"Origin": "http://testserver:8080"},  # another port is another origin
        {"Origin": "https://testserver"},  # and so is another scheme
    ],
)
def test_cross_site_writes_are_refused_before_anything_runs(
    edge: Edge, headers: dict[str, str]
) -> None:
    assert_refused(edge.upload(headers))
    assert_refused(edge.client.post("/v1/embeddings", json=EMBED, headers=headers))
    assert_refused(edge.client.delete("/v1/collections/kb", headers=headers))
    assert edge.untouched()


def test_a_refusal_is_counted_by_the_http_metrics(edge: Edge) -> None:
    assert_refused(edge.client.post("/v1/embeddings", json=EMBED, headers={"Origin": EVIL}))
    text = edge.client.get("/metrics").text
    line = next(
        ln for ln in text.splitlines() if ln.startswith("rag_http_requests_total") and "403" in ln
    )
    assert 'route="/v1/embeddings"' in line and line.endswith(" 1.0")


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, SDKs, servers
        {"Origin": "http://testserver"},
        {"Origin": "http://TestServer:80", "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
    ],
)
def test_same_origin_and_non_browser_writes_pass(edge: Edge, headers: dict[str, str]) -> None:
    r = edge.upload(headers)
    assert r.status_code == 200, r.text
    assert r.json()["files"][0]["status"] == "indexed", r.text
    r = edge.client.post("/v1/embeddings", json=EMBED, headers=headers)
    assert r.status_code == 200, r.text


def test_the_browser_verdict_wins_behind_a_proxy_that_rewrites_host(edge: Edge) -> None:
    page = {"Origin": "https://rag.example.org"}  # Host stays "testserver", as a proxy sends
    assert edge.client.post("/v1/embeddings", json=EMBED, headers=page).status_code == 403
    same = page | {"Sec-Fetch-Site": "same-origin"}
    assert edge.client.post("/v1/embeddings", json=EMBED, headers=same).status_code == 200


def test_reads_from_any_origin_pass_without_cors_headers(edge: Edge) -> None:
    r = edge.client.get("/v1/models", headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers


def test_an_allowed_origin_writes_and_gets_cors_headers(allowing: Edge) -> None:
    headers = {"Origin": APP, "Sec-Fetch-Site": "cross-site"}
    r = allowing.upload(headers)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == APP
    r = allowing.client.post("/v1/embeddings", json=EMBED, headers=headers)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == APP
    assert_refused(allowing.client.post("/v1/embeddings", json=EMBED, headers={"Origin": EVIL}))


def test_a_preflight_from_an_allowed_origin_succeeds(allowing: Edge) -> None:
    preflight = {
        "Origin": APP,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    r = allowing.client.options("/v1/embeddings", headers=preflight)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == APP
    assert "POST" in r.headers["access-control-allow-methods"]
    allowed = r.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    r = allowing.client.options("/v1/embeddings", headers=preflight | {"Origin": EVIL})
    assert "access-control-allow-origin" not in r.headers


def test_a_star_allows_any_origin_but_not_null(tmp_path: Path, tokenizer: Any) -> None:
    e = Edge(tmp_path, tokenizer, ["*"])
    with e.client:
        r = e.client.post("/v1/embeddings", json=EMBED, headers={"Origin": EVIL})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
        assert_refused(e.client.post("/v1/embeddings", json=EMBED, headers={"Origin": "null"}))


@pytest.mark.parametrize("bad", ["app.example.com", "https://app.example.com/path", "null"])
def test_cors_origins_must_be_origins(bad: str) -> None:
    with pytest.raises(SettingsError, match="cors_origins"):
        load_settings(server={"cors_origins": [bad]})


def test_cors_origins_are_normalized() -> None:
    settings = load_settings(server={"cors_origins": ["HTTPS://App.Example.com/", "*"]})
    assert settings.server.cors_origins == [APP, "*"]
