"""RemoteClient: errors as RemoteError, retries with backoff on 429/503 and transport errors."""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import formatdate

import httpx
import pytest

from rag_appliance.remote.client import RemoteClient, RemoteError, api_key, retry_after

Handler = Callable[[httpx.Request], httpx.Response]


class FakeFlakyServer:
    """An httpx MockTransport handler answering from a script, recording each request."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _client(fake: FakeFlakyServer, **kwargs: float) -> RemoteClient:
    options = {"backoff_s": 0.001, "max_backoff_s": 0.01} | kwargs
    return RemoteClient(
        "http://appliance.test/",
        "sk-test",
        transport=httpx.MockTransport(fake),
        **options,  # type: ignore[arg-type]
    )


def _error(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error": {"message": f"no ({code})", "type": "x", "param": "p", "code": code}}
    return httpx.Response(status, json=body, headers=headers)


async def test_retries_429_and_503_then_succeeds_with_the_key() -> None:
    fake = FakeFlakyServer(
        _error(429, "rate_limit_exceeded", {"retry-after": "0"}),
        _error(503, "starting"),
        httpx.Response(200, json={"ok": True}),
    )
    async with _client(fake) as client:
        assert await client.json("GET", "/v1/models") == {"ok": True}
    assert len(fake.requests) == 3
    assert all(r.headers["authorization"] == "Bearer sk-test" for r in fake.requests)
    assert fake.requests[0].url == "http://appliance.test/v1/models"


async def test_connect_errors_are_retried_until_the_attempts_run_out() -> None:
    fake = FakeFlakyServer(*[httpx.ConnectError("refused") for _ in range(3)])
    async with _client(fake, attempts=3) as client:
        with pytest.raises(httpx.ConnectError):
            await client.json("GET", "/v1/models")
    assert len(fake.requests) == 3


async def test_client_errors_are_not_retried_and_keep_the_openai_fields() -> None:
    fake = FakeFlakyServer(_error(401, "invalid_api_key"))
    async with _client(fake) as client:
        with pytest.raises(RemoteError) as info:
            await client.json("GET", "/v1/models")
    assert len(fake.requests) == 1
    err = info.value
    assert (err.status, err.code, err.param) == (401, "invalid_api_key", "p")
    assert "401" in err.message and "no (invalid_api_key)" in err.message


async def test_a_long_retry_after_is_not_waited_for() -> None:
    fake = FakeFlakyServer(_error(429, "rate_limit_exceeded", {"retry-after": "3600"}))
    async with _client(fake) as client:
        with pytest.raises(RemoteError) as info:
            await client.json("GET", "/v1/models")
    assert len(fake.requests) == 1 and info.value.retry_after == 3600


async def test_retry_after_is_honoured_over_the_backoff() -> None:
    fake = FakeFlakyServer(
        _error(503, "busy", {"retry-after": "0.3"}), httpx.Response(200, json={})
    )
    async with _client(fake) as client:
        started = time.monotonic()
        await client.json("GET", "/v1/models")
    # The backoff alone is ~1 ms: waiting 0.3 s can only come from the header.
    assert time.monotonic() - started >= 0.3


async def test_a_non_json_error_body_still_names_the_status() -> None:
    fake = FakeFlakyServer(httpx.Response(404, text="<html>nope</html>"))
    async with _client(fake) as client:
        with pytest.raises(RemoteError) as info:
            await client.json("GET", "/elsewhere")
    assert info.value.status == 404 and "404" in info.value.message


def test_retry_after_parses_seconds_and_http_dates() -> None:
    assert retry_after(None) is None and retry_after("soon") is None
    assert retry_after("2.5") == 2.5
    later = retry_after(formatdate(time.time() + 30, usegmt=True))
    assert later is not None and 25 <= later <= 31


def test_api_key_prefers_the_flag_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_API_KEY", "from-env")
    assert api_key("flag") == "flag" and api_key(None) == "from-env"
    monkeypatch.delenv("RAG_API_KEY")
    assert api_key(None) is None
