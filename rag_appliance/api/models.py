"""GET /v1/models."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from rag_appliance.api.deps import ServicesDep, json_response
from rag_appliance.embedding import registry
from rag_appliance.errors import ModelNotFound
from rag_appliance.protocol import responses as bodies
from rag_appliance.protocol.models import model_list
from rag_appliance.protocol.openapi import responses
from rag_appliance.services import Services

router = APIRouter()


@router.get("/v1/models", response_class=Response, responses=responses(bodies.ModelList))
async def list_models(services: ServicesDep) -> Response:
    """The served models and their aliases, then the registry's models, OpenAI-shaped."""
    body = model_list(_names(services), services.created)
    registered = await _registered(services)
    body["data"] = [registered.pop(m["id"], m) for m in body["data"]] + list(registered.values())
    return json_response(body)


@router.get(
    "/v1/models/{model_id:path}",
    response_class=Response,
    responses=responses(bodies.Model, 404),
)
async def get_model(model_id: str, services: ServicesDep) -> Response:
    """One model, OpenAI-shaped; 404 model_not_found when unknown."""
    registered = await _registered(services)
    if model_id in registered:
        return json_response(registered[model_id])
    if model_id not in _names(services):
        raise ModelNotFound(f"The model '{model_id}' does not exist", param="model")
    return json_response(model_list([model_id], services.created)["data"][0])


async def _registered(services: Services) -> dict[str, dict[str, Any]]:
    """The registry's fine-tuned models (data_dir/models), read from disk off the event loop."""
    found = await asyncio.to_thread(registry.list_models, services.settings.data_dir)
    served = set(services.embedding.model_names)
    return registry.model_entries(found, served, services.created)


def _names(services: Services) -> list[str]:
    names = list(services.embedding.model_names)
    chat = services.chat
    if chat is not None:
        names += [chat.served_name, *sorted(chat.names - {chat.served_name})]
    if services.reranker is not None:
        names += services.reranker.model_names
    return list(dict.fromkeys(names))
