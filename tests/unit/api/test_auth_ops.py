"""Ops endpoints with API keys: /metrics, /docs, /redoc, /openapi.json admin-only or open by
server.protect_ops; /health open; /ready's details for admins, and no file paths to others."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from rag_appliance.app import create_app
from rag_appliance.settings import load_settings
from tests.conftest import make_services
from tests.fakes import FakeEncoder, FakeGenerator
from tests.unit.auth.conftest import ADMIN, KEYS, RO_A, bearer

OPS = ["/metrics", "/openapi.json", "/docs", "/redoc"]


def client_for(**server: Any) -> TestClient:
    settings = load_settings(server={"ui": False, **server})
    services = make_services(settings, FakeEncoder(), generator=FakeGenerator())
    return TestClient(create_app(settings, services))


@pytest.mark.parametrize("path", OPS)
def test_ops_are_admin_only_by_default(path: str) -> None:
    with client_for(api_keys=KEYS) as c:
        assert c.get(path).status_code == 401
        r = c.get(path, headers=bearer(RO_A))
        assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"
        assert c.get(path, headers=bearer(ADMIN)).status_code == 200


@pytest.mark.parametrize("path", OPS)
def test_ops_can_be_left_open(path: str) -> None:
    with client_for(api_keys=KEYS, protect_ops=False) as c:
        assert c.get(path).status_code == 200
        assert c.get(path, headers=bearer(RO_A)).status_code == 200


def test_health_is_open_and_minimal() -> None:
    with client_for(api_keys=KEYS) as c:
        assert c.get("/health").json() == {"status": "ok"}


def test_ready_details_are_for_admins() -> None:
    with client_for(api_keys=KEYS) as c:
        for headers in ({}, bearer(RO_A), bearer("wrong")):
            r = c.get("/ready", headers=headers)
            assert r.status_code == 200 and r.json() == {"status": "ready"}
        full = c.get("/ready", headers=bearer(ADMIN)).json()
    assert "source" in full["embedding"] and full["generator"]["source"] == "fake"


def test_open_ready_details_name_no_files() -> None:
    with client_for(api_keys=KEYS, protect_ops=False) as c:
        for headers in ({}, bearer(RO_A)):
            body = c.get("/ready", headers=headers).json()
            assert body["embedding"]["dimension"] == 8
            assert "source" not in body["embedding"] and "source" not in body["generator"]
        admin = c.get("/ready", headers=bearer(ADMIN)).json()
    assert admin["generator"]["source"] == "fake"


def test_without_keys_ready_is_as_before() -> None:
    with client_for() as c:
        assert c.get("/ready").json()["generator"]["source"] == "fake"
