"""The appliance's embedding engine in the benchmark's own process (no HTTP)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict
from typing import Any

from lib.driver import Reply, Sender
from lib.servers import environ


def build_engine(
    config: str | None = None, env: dict[str, str] | None = None
) -> tuple[Any, dict[str, Any], float]:
    """The appliance's services from its settings (a YAML profile, RAG_* variables in `env`).

    Returns the services, the encoder's info (device, dtype, ...) and the seconds it took.
    """
    from rag_appliance.services import build_services
    from rag_appliance.settings import load_settings

    started = time.perf_counter()
    with environ(env or {}):
        services = build_services(load_settings(config))
    info = getattr(services.embedding.encoder, "info", None)
    meta: dict[str, Any] = asdict(info) if info is not None else {}
    return services, meta, round(time.perf_counter() - started, 1)


def engine_sender(svc: Any) -> Sender:
    """A sender that embeds one batch through an EmbeddingService (no response body)."""
    from rag_appliance.embedding.service import EmbedParams

    async def send(texts: list[str]) -> Reply:
        result = await svc.embed(EmbedParams(inputs=texts))
        return Reply(vectors=result.vectors, tokens=result.prompt_tokens, nbytes=0)

    return send


def attention_of(services: Any) -> str | None:
    """The attention implementation the engine's transformer runs (sdpa, eager, ...)."""
    st: Any = getattr(services.embedding.encoder, "_st", None)
    with contextlib.suppress(Exception):
        module = st[0]
        model = getattr(module, "auto_model", None) or module.model
        return str(model.config._attn_implementation)
    return None
