"""The HTTP edge of authentication: bearer keys on every route but the open ones, throttling.

One pure-ASGI middleware decides for every request, before routing, so a route added later is
protected without asking: only /health, /ready and the web UI (which has its own login) are
open, and /metrics, /docs, /redoc and /openapi.json are open or admin-only by
`server.protect_ops`. The authenticated principal is set in the request's context for the
services to check (`auth.access`).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Literal

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag_appliance.auth.access import PermissionDenied, reset_principal, set_principal
from rag_appliance.auth.keys import ANONYMOUS, KeyRing, Principal
from rag_appliance.errors import AppError, Unauthorized

OPEN = frozenset({"/health", "/ready"})
OPS = frozenset({"/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
MAX_CLIENTS = 10_000  # addresses remembered by the throttle: bounded memory under a flood
NO_KEY = "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
BAD_KEY = "Incorrect API key provided."

Kind = Literal["api", "open", "ops", "ui"]


class TooManyAuthFailures(AppError):
    """429: too many wrong keys from this address; wait Retry-After seconds."""

    status = 429
    type = "rate_limit_error"
    code = "too_many_auth_failures"


class FailureThrottle:
    """Failed logins per client address in a sliding window; refuses an address at the limit."""

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_clients = max_clients
        self._clock = clock
        # address -> its recent failure times, oldest first; least recently failing first
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try again, or None when it is not throttled."""
        times = self._failures.get(client)
        if times is None:
            return None
        now = self._clock()
        while times and now - times[0] >= self.window_s:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        if len(times) < self.max_failures:
            return None
        return max(1, math.ceil(self.window_s - (now - times[0])))

    def failed(self, client: str) -> None:
        """Record a failed attempt from `client`."""
        times = self._failures.pop(client, None) or deque(maxlen=self.max_failures)
        times.append(self._clock())
        self._failures[client] = times  # moved to the end: the most recent
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)

    def __len__(self) -> int:
        return len(self._failures)


class AuthMiddleware:
    """401 without a valid key, 403 for ops endpoints without an admin key, 429 when throttled."""

    def __init__(
        self,
        app: ASGIApp,
        keys: KeyRing,
        protect_ops: bool = True,
        throttle: FailureThrottle | None = None,
        ui_path: str = "/ui",
    ) -> None:
        self.app = app
        self.keys = keys
        self.protect_ops = protect_ops
        self.throttle = throttle
        self.ui_path = ui_path
        self.ui_login = frozenset({f"{ui_path}/login", f"{ui_path}/login/"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys:
            await self.app(scope, receive, send)  # no keys configured: open, as before
            return
        path = _route_path(scope)
        kind = self._kind(path)
        client = _client(scope)
        if kind == "ui":
            await self._ui(scope, receive, send, path, client)
            return
        needs_key = kind == "api" or (kind == "ops" and self.protect_ops)
        token = _bearer(scope)
        principal: Principal | None = None
        if token is not None:
            wait = self.throttle.retry_after(client) if self.throttle else None
            if wait is not None and needs_key:
                await _send_error(send, _throttled(wait))
                return
            if wait is None:  # while throttled, an open path is served without the key
                principal = self.keys.authenticate(token)
                if principal is None and self.throttle is not None:
                    self.throttle.failed(client)
        if principal is None:
            if needs_key:
                message = NO_KEY if token is None else BAD_KEY
                await _send_error(send, Unauthorized(message, headers=_CHALLENGE))
                return
            principal = ANONYMOUS
        if kind == "ops" and self.protect_ops and not principal.is_admin:
            await _send_error(send, PermissionDenied(f"{path} needs an admin API key."))
            return
        scope.setdefault("state", {})["principal"] = principal
        reset = set_principal(principal)
        try:
            await self.app(scope, receive, send)
        finally:
            reset_principal(reset)

    def _kind(self, path: str) -> Kind:
        if path in OPEN:
            return "open"
        if path in OPS:
            return "ops"
        if path == self.ui_path or path.startswith(self.ui_path + "/"):
            return "ui"
        return "api"

    async def _ui(self, scope: Scope, receive: Receive, send: Send, path: str, client: str) -> None:
        """The UI checks its own logins (a key as the password); failed ones count here too."""
        if self.throttle is None or scope["method"] != "POST" or path not in self.ui_login:
            await self.app(scope, receive, send)
            return
        throttle = self.throttle
        wait = throttle.retry_after(client)
        if wait is not None:
            await _send_error(send, _throttled(wait))
            return

        async def watching_send(message: Message) -> None:
            # Gradio answers a wrong user name or password with 400 ("Incorrect credentials").
            if message["type"] == "http.response.start" and message["status"] in (400, 401):
                throttle.failed(client)
            await send(message)

        await self.app(scope, receive, watching_send)


_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _throttled(wait: int) -> TooManyAuthFailures:
    return TooManyAuthFailures(
        f"Too many failed API key attempts from this address; retry in {wait} s.",
        headers={"Retry-After": str(wait)},
    )


def _bearer(scope: Scope) -> bytes | None:
    """The bearer token of the Authorization header (raw bytes), or None."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            token = token.strip()
            return token if scheme.lower() == b"bearer" and token else None
    return None


def _client(scope: Scope) -> str:
    # The peer address; behind a reverse proxy, uvicorn's --proxy-headers (with
    # --forwarded-allow-ips) makes it the real client's instead of the proxy's.
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _route_path(scope: Scope) -> str:
    """The path the router matches: without the server's root_path (as Starlette routes)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path != root and path[len(root)] == "/":
        return path[len(root) :]
    return path


async def _send_error(send: Send, error: AppError) -> None:
    """Answer with the error's OpenAI body (and its headers) before anything else was sent."""
    body = orjson.dumps(error.body())
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
