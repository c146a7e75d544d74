"""ASGI middleware: request body size limit (OpenAI error shape) and HTTP metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import orjson
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag_appliance.errors import PayloadTooLarge
from rag_appliance.observability import Metrics

UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class BodyLimitMiddleware:
    """413 for bodies over the limit, by Content-Length or by counting what arrives."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, overrides: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.overrides = overrides or {}  # exact path -> its own limit (uploads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.overrides.get(scope["path"], self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(send, limit)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send, limit)

    async def _reject(self, send: Send, limit: int) -> None:
        error = PayloadTooLarge(f"the request body is larger than {limit} bytes")
        body = orjson.dumps(error.body())
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(HTTPException):
    """Raised from `receive`; FastAPI passes HTTP exceptions through to the app's handler."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="the request body is too large")


class HttpMetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status.

    Pure ASGI (not BaseHTTPMiddleware, which buffers streams): a streamed response is timed
    to its last body message.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: Callable[[], Metrics | None],
        routes: Sequence[BaseRoute],
    ) -> None:
        self.app = app
        self.metrics = metrics  # looked up per request: services may be built at startup
        self.routes = routes  # the app's own list: routes mounted later are seen too

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self.metrics() if scope["type"] == "http" else None
        if metrics is None:
            await self.app(scope, receive, send)
            return
        original = dict(scope)  # routing and mounts write into scope
        start = time.perf_counter()
        status = 500  # what the client gets when the app raises before responding
        ended: float | None = None

        async def observing_send(message: Message) -> None:
            nonlocal status, ended
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                ended = time.perf_counter()
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            seconds = (ended or time.perf_counter()) - start
            method = original["method"] if original["method"] in _METHODS else "other"
            metrics.observe_request(method, self._route(scope, original), status, seconds)

    def _route(self, scope: Scope, original: Scope) -> str:
        """The matched route's template (bounded cardinality), never the raw path."""
        route = scope.get("route")
        # Inside a mount (the UI) scope["route"] is the sub-app's; a body rejected before
        # routing has none: both are matched against the app's routes here.
        if route is None or scope.get("root_path", "") != original.get("root_path", ""):
            route = None
            for candidate in self.routes:
                match, _ = candidate.matches(original)
                if match is Match.FULL:
                    route = candidate
                    break
                if match is Match.PARTIAL and route is None:
                    route = candidate  # e.g. a 405: the path exists, the method does not
        path = getattr(route, "path_format", None) if route is not None else None
        return path if isinstance(path, str) else UNMATCHED
