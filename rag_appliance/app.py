"""create_app(settings, services): the FastAPI application factory."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from rag_appliance.api import (
    collections,
    embeddings,
    health,
    index,
    metrics,
    models,
    search,
)
from rag_appliance.api.deps import json_response, require_api_key
from rag_appliance.auth.keys import KeyRing
from rag_appliance.auth.middleware import AuthMiddleware, FailureThrottle
from rag_appliance.batches import router as batches
from rag_appliance.chat import router as chat
from rag_appliance.completions import router as completions
from rag_appliance.errors import AppError, error_body, status_type
from rag_appliance.feedback import router as feedback
from rag_appliance.jobs import router as jobs
from rag_appliance.middleware import (
    BodyLimitMiddleware,
    CrossOriginMiddleware,
    HttpMetricsMiddleware,
)
from rag_appliance.protocol import openapi
from rag_appliance.rerank import router as rerank
from rag_appliance.services import Services, build_services
from rag_appliance.settings import Settings

log = logging.getLogger(__name__)

_INPUT_SHAPES = (
    "'input' must be a non-empty string, an array of strings, an array of token ids "
    "or an array of token-id arrays"
)


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    """The appliance's ASGI app; builds its services at startup unless given them."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.services is None:
            app.state.services = await asyncio.to_thread(build_services, settings)
            await asyncio.to_thread(gc.collect)  # loading the models left garbage: not kept
        await app.state.services.start()
        # What start-up made (the model, torch, the UI: ~650k objects) leaves the cyclic
        # collector's view: a full collection set off by an upload then walks what was made
        # since, instead of stalling the event loop for ~0.5-1.5 s (docs/security.md).
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            await app.state.services.stop()

    app = FastAPI(title="rag-appliance", version="0.1.0", lifespan=lifespan)
    app.state.services = services
    app.state.settings = settings
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.server.max_body_bytes,
        overrides={
            "/v1/index/upload": settings.ingest.max_upload_bytes,
            "/v1/files": settings.batch.max_file_bytes + 64 * 1024,  # + the multipart framing
            "/v1/index/jobs": settings.jobs.max_job_bytes,  # JSON jobs: jobs.max_json_bytes
            "/ui/gradio_api/upload": settings.ingest.max_upload_bytes,  # the web UI's uploads
        },
    )
    server = settings.server
    throttle = None
    if server.auth_max_failures:
        throttle = FailureThrottle(server.auth_max_failures, server.auth_failure_window_s)
    # Every route but /health, /ready and the UI needs a key (when keys are configured): new
    # routes are covered without asking. Inside CORS, so preflights pass and 401s carry CORS.
    app.add_middleware(
        AuthMiddleware,
        keys=KeyRing(server.api_keys),
        protect_ops=server.protect_ops,
        throttle=throttle,
    )
    if settings.server.cors_origins:
        # Preflights and CORS headers for the allowed web apps; bearer keys, not cookies.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.server.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    # Before routing and body parsing: a refused cross-site write reads no body.
    app.add_middleware(CrossOriginMiddleware, allowed=settings.server.cors_origins)
    # Added last, so outermost: 413s from the body limit and 403s above are counted too.
    app.add_middleware(
        HttpMetricsMiddleware,
        metrics=lambda: app.state.services.metrics if app.state.services else None,
        routes=app.router.routes,
    )
    protected = [Depends(require_api_key)]
    for module in (embeddings, chat, completions, rerank, models, index, search, collections):
        app.include_router(module.router, dependencies=protected)
    app.include_router(feedback.router, dependencies=protected)
    app.include_router(batches.router, dependencies=protected)
    app.include_router(jobs.router, dependencies=protected)
    app.include_router(health.router)
    app.include_router(metrics.router)
    _install_error_handlers(app)
    openapi.install(app, settings)  # the document as the handlers above answer (no 422)
    if settings.server.ui:
        _mount_ui(app, settings)
    return app


def _mount_ui(app: FastAPI, settings: Settings) -> None:
    """The web UI at /ui, when gradio is installed (mount_ui logs and skips otherwise)."""
    from rag_appliance.ui import mount_ui

    # Services may only exist once the lifespan built them: the UI looks them up per event.
    mount_ui(app, settings, lambda: app.state.services)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(_: Request, exc: AppError) -> Response:
        return json_response(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        return json_response(_validation_body(exc.errors()), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        headers = exc.headers
        if exc.status_code == 404:
            message = "Not found: no such route"
        if exc.status_code == 405:  # Starlette's Allow names one route's methods, not the path's
            headers = {**(headers or {}), "Allow": _allowed(app, request)}
        body = error_body(message, status_type(exc.status_code), None, None)
        return json_response(body, status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        body = error_body("The server had an error while processing your request.", "server_error")
        return json_response(body, status_code=500)


def _allowed(app: FastAPI, request: Request) -> str:
    """Every method some route serves at this request's path (for a 405's Allow header)."""
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, BaseRoute) and route.matches(request.scope)[0] != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def _validation_body(errors: Any) -> dict[str, Any]:
    """One OpenAI error for pydantic's list: the first problem, with its parameter."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") in ("json_invalid", "model_attributes_type") or not loc:
        what = (
            "the body is not valid JSON"
            if first.get("type") == "json_invalid"
            else "the body must be a JSON object sent with Content-Type: application/json"
        )
        return error_body(f"Invalid request: {what}", "invalid_request_error")
    param = loc[0]
    if param == "input":
        return error_body(_INPUT_SHAPES, "invalid_request_error", "input", "invalid_type")
    where = ".".join(loc)
    return error_body(f"Invalid '{where}': {first.get('msg')}", "invalid_request_error", param)
