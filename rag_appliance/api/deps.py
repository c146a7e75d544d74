"""Dependency aliases shared by the routers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from fastapi.responses import Response

from rag_appliance.auth.access import set_principal
from rag_appliance.auth.keys import ANONYMOUS, Principal, authenticate
from rag_appliance.auth.middleware import BAD_KEY, NO_KEY
from rag_appliance.embedding.service import EmbeddingService
from rag_appliance.errors import Unauthorized
from rag_appliance.services import Services


def get_services(request: Request) -> Services:
    """The app's services object."""
    return request.app.state.services


def get_embedding(request: Request) -> EmbeddingService:
    """The embedding service, or a 503 while it is not serving."""
    return get_services(request).require_embedding()


async def require_api_key(request: Request) -> None:
    """401 unless a configured key authenticated the request (no keys: open).

    The AuthMiddleware authenticates (and throttles) every request before routing; this is
    the routers' own guard should they be served without it. Async, so that the principal it
    sets is the one the endpoint and the services see.
    """
    keys = get_services(request).settings.server.api_keys
    if not keys:
        return
    principal = request.scope.get("state", {}).get("principal")
    if isinstance(principal, Principal) and principal is not ANONYMOUS:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(NO_KEY)
    found = authenticate(keys, token.strip().encode("latin-1"))
    if found is None:
        raise Unauthorized(BAD_KEY)
    set_principal(found)


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
