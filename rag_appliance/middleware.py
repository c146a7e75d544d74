"""ASGI middleware: body size limit and cross-origin refusals (OpenAI error shape), metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence

import orjson
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag_appliance.errors import AppError, PayloadTooLarge
from rag_appliance.observability import Metrics
from rag_appliance.settings import normalize_origin

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


_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CROSS = frozenset({b"cross-site", b"same-site"})  # same-site is still another origin
_SAME = frozenset({b"same-origin", b"none"})  # none: the user's own navigation (a bookmark)


class CrossOriginRefused(AppError):
    """403: a browser request from another origin that server.cors_origins does not allow."""

    status = 403
    type = "invalid_request_error"
    code = "cross_origin_request"


class CrossOriginMiddleware:
    """403 for state-changing browser requests from origins that server.cors_origins omits."""

    # Any web page can POST a form or a text/plain body without a preflight, so CORS alone does
    # not stop the write. Browsers label such requests with Origin and Sec-Fetch-Site, which a
    # page cannot forge; clients that send neither (curl, SDKs, servers) are not browsers.

    def __init__(self, app: ASGIApp, allowed: Collection[str]) -> None:
        self.app = app
        self.any = "*" in allowed
        self.allowed = {o for o in map(normalize_origin, allowed) if o is not None}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _UNSAFE:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin = headers.get(b"origin")
        site = headers.get(b"sec-fetch-site", b"").lower()
        if self._allowed(scope, headers, origin, site):
            await self.app(scope, receive, send)
            return
        error = CrossOriginRefused(
            "Cross-origin browser requests may not change state here; to allow a web app, "
            "add its origin (e.g. https://app.example.com) to server.cors_origins "
            "(RAG_SERVER__CORS_ORIGINS)"
        )
        await _send_error(send, error)

    def _allowed(
        self, scope: Scope, headers: dict[bytes, bytes], origin: bytes | None, site: bytes
    ) -> bool:
        """Whether the request is same-origin, from an allowed origin, or not from a browser."""
        if origin is None:
            return site not in _CROSS
        # "null" (sandboxed frames, file: pages) normalizes to None: no origin to allow it by.
        claimed = normalize_origin(origin.decode("latin-1"))
        if claimed is None:
            return False
        if self.any or claimed in self.allowed:
            return True
        if site:  # the browser's own verdict, right even behind a proxy that rewrites Host
            return site in _SAME
        return claimed == self._own_origin(scope, headers)  # older browsers: Origin only

    @staticmethod
    def _own_origin(scope: Scope, headers: dict[bytes, bytes]) -> str | None:
        """The origin the client addressed: the scheme and the Host header (as a browser does)."""
        host = headers.get(b"host")
        if host is None:
            return None
        return normalize_origin(f"{scope.get('scheme', 'http')}://{host.decode('latin-1')}")


async def _send_error(send: Send, error: AppError) -> None:
    """Answer with the error's OpenAI body before anything else was sent."""
    body = orjson.dumps(error.body())
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
