"""Dependency aliases shared by the routers."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from fastapi.responses import Response

from rag_appliance.embedding.service import EmbeddingService
from rag_appliance.errors import Unauthorized
from rag_appliance.services import Services


def get_services(request: Request) -> Services:
    """The app's services object."""
    return request.app.state.services


def get_embedding(request: Request) -> EmbeddingService:
    """The embedding service, or a 503 while it is not serving."""
    return get_services(request).require_embedding()


def require_api_key(request: Request) -> None:
    """401 unless the bearer key is one of the configured keys (no keys: open)."""
    keys: list[str] = get_services(request).settings.server.api_keys
    if not keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(
            "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
        )
    if not any(hmac.compare_digest(token.encode(), key.encode()) for key in keys):
        raise Unauthorized("Incorrect API key provided.")


ServicesDep = Annotated[Services, Depends(get_services)]
EmbeddingDep = Annotated[EmbeddingService, Depends(get_embedding)]


def json_response(
    body: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """JSON through orjson, numpy arrays included (serialised in C, no per-float Python)."""
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )
