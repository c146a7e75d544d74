"""GET /health (liveness) and GET /ready (models loaded, engine state).

Both stay open with API keys configured (probes send none). /ready's details go to admin keys
only under server.protect_ops, and never name files (model sources) to anyone else.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from rag_appliance.api.deps import ServicesDep, json_response
from rag_appliance.auth.access import current_principal
from rag_appliance.protocol import responses as bodies
from rag_appliance.protocol.openapi import responses
from rag_appliance.services import Services

router = APIRouter()


@router.get("/health", response_class=Response, responses=responses(bodies.Health))
async def health() -> Response:
    """Alive: the process answers HTTP."""
    return json_response({"status": "ok"})


@router.get(
    "/ready",
    response_class=Response,
    responses={
        **responses(bodies.Ready),
        503: {"model": bodies.Ready, "description": "Not ready (starting or stopping)."},
    },
)
async def ready(services: ServicesDep) -> Response:
    """Ready: the embedding model is loaded and its engine running; 503 otherwise."""
    status_code = 200 if services.running else 503
    status = "ready" if services.running else "unavailable"
    server = services.settings.server
    principal = current_principal()
    admin = not server.api_keys or (principal is not None and principal.is_admin)
    if not admin and server.protect_ops:
        return json_response({"status": status}, status_code=status_code)
    emb = services.embedding
    info = getattr(emb.encoder, "info", None)
    embedding: dict[str, Any] = {
        "model": emb.served_name,
        "profile": emb.profile.name,
        "dimension": emb.profile.dimension,
        "max_tokens_per_input": emb.max_tokens_per_input,
        "device": getattr(info, "device", None),
        "dtype": getattr(info, "dtype", None),
        "source": getattr(info, "source", None),
        "engine": asdict(emb.batcher.stats),
    }
    generator = _generator(services)
    if not admin:  # a model's source is a path on this machine (or a hub id): admins only
        embedding.pop("source")
        if generator is not None:
            generator.pop("source", None)
    body = {
        "status": status,
        "embedding": embedding,
        "generator": generator,
        "store": {
            "backend": services.settings.store.backend if services.store else None,
        },
    }
    return json_response(body, status_code=status_code)


def _generator(services: Services) -> dict[str, Any] | None:
    if services.generator is None:
        return None
    if services.chat is None:
        return {"running": False}
    return {"running": True, **asdict(services.generator.info)}
