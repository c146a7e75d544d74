"""GET /health (liveness) and GET /ready (models loaded, engine state)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from rag_appliance.api.deps import ServicesDep, json_response
from rag_appliance.services import Services

router = APIRouter()


@router.get("/health", response_class=Response)
async def health() -> Response:
    """Alive: the process answers HTTP."""
    return json_response({"status": "ok"})


@router.get("/ready", response_class=Response)
async def ready(services: ServicesDep) -> Response:
    """Ready: the embedding model is loaded and its engine running; 503 otherwise."""
    emb = services.embedding
    info = getattr(emb.encoder, "info", None)
    body = {
        "status": "ready" if services.running else "unavailable",
        "embedding": {
            "model": emb.served_name,
            "profile": emb.profile.name,
            "dimension": emb.profile.dimension,
            "max_tokens_per_input": emb.max_tokens_per_input,
            "device": getattr(info, "device", None),
            "dtype": getattr(info, "dtype", None),
            "source": getattr(info, "source", None),
            "engine": asdict(emb.batcher.stats),
        },
        "generator": _generator(services),
        "store": {
            "backend": services.settings.store.backend if services.store else None,
        },
    }
    return json_response(body, status_code=200 if services.running else 503)


def _generator(services: Services) -> dict[str, Any] | None:
    if services.generator is None:
        return None
    if services.chat is None:
        return {"running": False}
    return {"running": True, **asdict(services.generator.info)}
