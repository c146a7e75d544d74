"""AuthMiddleware and FailureThrottle: failed-auth throttling per address, the UI's logins,
CORS preflights, and what stays open."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from rag_appliance.app import create_app
from rag_appliance.auth.keys import KeyRing
from rag_appliance.auth.middleware import AuthMiddleware, FailureThrottle
from rag_appliance.settings import load_settings
from tests.conftest import make_services
from tests.fakes import FakeEncoder
from tests.unit.auth.conftest import ADMIN, KEYS, RO_A, bearer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_window_and_retry_after() -> None:
    clock = Clock()
    throttle = FailureThrottle(3, 60.0, clock=clock)
    for _ in range(2):
        throttle.failed("1.2.3.4")
        clock.now += 10
    assert throttle.retry_after("1.2.3.4") is None  # two failures: under the limit
    throttle.failed("1.2.3.4")
    assert throttle.retry_after("1.2.3.4") == 40  # the first failure leaves the window in 40 s
    assert throttle.retry_after("5.6.7.8") is None  # per address
    clock.now += 40
    assert throttle.retry_after("1.2.3.4") is None  # the window slid past the first failure
    clock.now += 1000
    assert throttle.retry_after("1.2.3.4") is None and len(throttle) == 0  # forgotten


def test_throttle_memory_is_bounded() -> None:
    throttle = FailureThrottle(1, 60.0, max_clients=100, clock=Clock())
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle) == 100
    assert throttle.retry_after("10.0.3.231") == 60  # the most recent are kept
    assert throttle.retry_after("10.0.0.0") is None


def app_client(address: str = "10.0.0.1", **server: Any) -> TestClient:
    settings = load_settings(server={"api_keys": KEYS, "ui": False, **server})
    app = create_app(settings, make_services(settings, FakeEncoder()))
    return TestClient(app, client=(address, 4000))


def embed(client: TestClient, key: str | None) -> int:
    headers = bearer(key) if key else {}
    return client.post("/v1/embeddings", json={"input": "a"}, headers=headers).status_code


def test_wrong_keys_from_one_address_are_throttled() -> None:
    settings = {"auth_max_failures": 3, "auth_failure_window_s": 30}
    with app_client("10.0.0.1", **settings) as c, app_client("10.0.0.2", **settings) as other:
        for _ in range(5):
            assert embed(c, None) == 401  # no key is not a guess: not counted
        assert [embed(c, "guess") for _ in range(3)] == [401, 401, 401]
        r = c.post("/v1/embeddings", json={"input": "a"}, headers=bearer(ADMIN))
        assert r.status_code == 429  # even the right key: no more guesses from here
        assert r.json()["error"]["code"] == "too_many_auth_failures"
        assert 1 <= int(r.headers["retry-after"]) <= 30
        assert c.get("/health").status_code == 200  # probes are never refused
        assert c.get("/ready", headers=bearer(ADMIN)).json() == {"status": "ready"}
        assert embed(other, ADMIN) == 200  # another address is not affected


def test_throttling_can_be_turned_off() -> None:
    with app_client(auth_max_failures=0) as c:
        assert [embed(c, "guess") for _ in range(30)] == [401] * 30
        assert embed(c, ADMIN) == 200


def test_a_wrong_key_on_an_open_path_counts_but_is_served_anonymously() -> None:
    with app_client(auth_max_failures=2) as c:
        for _ in range(2):
            assert c.get("/ready", headers=bearer("guess")).json() == {"status": "ready"}
        assert embed(c, ADMIN) == 429


def test_cors_preflights_need_no_key() -> None:
    with app_client(cors_origins=["https://app.example.com"]) as c:
        preflight = {
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        assert c.options("/v1/embeddings", headers=preflight).status_code == 200
        r = c.post("/v1/embeddings", json={"input": "a"}, headers={"Origin": preflight["Origin"]})
        assert r.status_code == 401  # and the 401 carries CORS headers, so the page can read it
        assert r.headers["access-control-allow-origin"] == "https://app.example.com"


def test_no_keys_configured_leaves_everything_open() -> None:
    settings = load_settings(server={"ui": False})
    with TestClient(create_app(settings, make_services(settings, FakeEncoder()))) as c:
        assert embed(c, None) == 200 and embed(c, "anything") == 200
        assert c.get("/metrics").status_code == 200


def ui_app() -> Starlette:
    async def login(request: Request) -> JSONResponse:
        form = await request.form()
        ok = form.get("password") == RO_A
        return JSONResponse({"success": ok}, status_code=200 if ok else 400)

    async def page(_: Request) -> JSONResponse:
        return JSONResponse({"page": True})

    return Starlette(routes=[Route("/ui/login", login, methods=["POST"]), Route("/ui/", page)])


def test_ui_logins_are_throttled_and_the_ui_is_left_to_its_own_login() -> None:
    app = AuthMiddleware(ui_app(), KeyRing(KEYS), throttle=FailureThrottle(2, 60.0))
    with TestClient(app) as c:
        assert c.get("/ui/").status_code == 200  # Gradio's own login guards the UI
        assert c.post("/ui/login", data={"username": "u", "password": RO_A}).status_code == 200
        for _ in range(2):
            assert c.post("/ui/login", data={"username": "u", "password": "x"}).status_code == 400
        r = c.post("/ui/login", data={"username": "u", "password": RO_A})
        assert r.status_code == 429 and "retry-after" in r.headers
        assert c.get("/uiother").status_code == 401  # only /ui and below are the UI's


@pytest.mark.parametrize("path", ["/ready/", "/health/x", "/HEALTH"])
def test_only_the_exact_open_paths_are_open(path: str) -> None:
    with app_client() as c:
        assert c.get(path).status_code == 401


def test_the_real_ui_login_is_throttled() -> None:
    pytest.importorskip("gradio")
    settings = load_settings(server={"api_keys": [ADMIN], "auth_max_failures": 2})
    with TestClient(create_app(settings, make_services(settings, FakeEncoder()))) as c:
        wrong = {"username": "someone", "password": "guess"}
        assert [c.post("/ui/login", data=wrong).status_code for _ in range(3)] == [400, 400, 429]
