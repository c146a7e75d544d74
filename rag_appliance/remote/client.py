"""An HTTP client of a running appliance: bearer key, timeouts, retries with backoff."""

from __future__ import annotations

import email.utils
import os
import time
from collections.abc import Mapping
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from rag_appliance.errors import AppError

# Statuses worth another try: the engine is full (429) or the server is starting/stopping (503).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# A Retry-After beyond this is not waited for: the caller hears the error instead.
MAX_RETRY_AFTER_S = 60.0


class RemoteError(AppError):
    """The server's error (its OpenAI error fields and HTTP status), or an unreachable server."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 503,
        type_: str = "service_unavailable",
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.status = status
        self.type = type_
        self.retry_after = retry_after

    @classmethod
    def from_response(cls, response: httpx.Response) -> RemoteError:
        """The error body of a non-2xx response (or its status line when it has none)."""
        try:
            body = response.json().get("error") or {}
        except (ValueError, AttributeError):
            body = {}
        message = str(body.get("message") or response.reason_phrase or "error")
        return cls(
            f"the server answered {response.status_code}: {message}",
            status=response.status_code,
            type_=str(body.get("type") or "server_error"),
            param=body.get("param"),
            code=body.get("code"),
            retry_after=retry_after(response.headers.get("retry-after")),
        )


def retry_after(header: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), if any."""
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, RemoteError):
        return exc.status in RETRY_STATUSES and (exc.retry_after or 0.0) <= MAX_RETRY_AFTER_S
    # Connect errors, resets and timeouts: an upload is idempotent by content hash, so a retry
    # of one the server did finish only finds it unchanged.
    return isinstance(exc, httpx.TransportError)


class _WaitRetryAfter:
    """The server's Retry-After when it gave one, else exponential backoff with jitter."""

    def __init__(self, initial: float, most: float) -> None:
        self.backoff = wait_exponential_jitter(initial=initial, max=most, jitter=initial)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, RemoteError) and exc.retry_after is not None:
            return exc.retry_after
        return float(self.backoff(state))


class RemoteClient:
    """Calls to one appliance (async); non-2xx answers raise RemoteError after the retries."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 300.0,
        attempts: int = 6,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        connections: int = 16,
    ) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.attempts = attempts
        self._wait = _WaitRetryAfter(backoff_s, max_backoff_s)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            # Indexing a large file takes a while server-side: a long read, a short connect.
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=connections),
            transport=transport,
        )

    async def __aenter__(self) -> RemoteClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        files: Any = None,
        data: Mapping[str, Any] | None = None,
        ok: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """The response of a 2xx answer (or a status in `ok`), retried on transient failures."""
        retrying = AsyncRetrying(
            retry=retry_if_exception(_retryable),
            wait=self._wait,
            stop=stop_after_attempt(self.attempts),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                response = await self._send(method, path, json, params, files, data)
                if not response.is_success and response.status_code not in ok:
                    raise RemoteError.from_response(response)
                return response
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _send(
        self,
        method: str,
        path: str,
        json: Any,
        params: Mapping[str, Any] | None,
        files: Any,
        data: Mapping[str, Any] | None,
    ) -> httpx.Response:
        try:
            return await self._http.request(
                method, path, json=json, params=params, files=files, data=data
            )
        except httpx.InvalidURL as exc:
            raise RemoteError(f"bad server URL {self.base_url!r}: {exc}", status=400) from None

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON body of a successful call."""
        return (await self.request(method, path, **kwargs)).json()


def unreachable(base_url: str, exc: httpx.TransportError) -> RemoteError:
    """The error for a server that never answered (after the retries)."""
    reason = str(exc) or type(exc).__name__
    return RemoteError(f"cannot reach the server at {base_url}: {reason}", code="unreachable")


def api_key(flag: str | None) -> str | None:
    """The key from --api-key, else $RAG_API_KEY."""
    return flag or os.environ.get("RAG_API_KEY") or None
