"""GET /v1/models."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from rag_appliance.api.deps import ServicesDep, json_response
from rag_appliance.errors import ModelNotFound
from rag_appliance.protocol.models import model_list
from rag_appliance.services import Services

router = APIRouter()


@router.get("/v1/models", response_class=Response)
async def list_models(services: ServicesDep) -> Response:
    """The served models and their aliases, OpenAI-shaped."""
    return json_response(model_list(_names(services), services.created))


@router.get("/v1/models/{model_id:path}", response_class=Response)
async def get_model(model_id: str, services: ServicesDep) -> Response:
    """One model, OpenAI-shaped; 404 model_not_found when unknown."""
    if model_id not in _names(services):
        raise ModelNotFound(f"The model '{model_id}' does not exist", param="model")
    return json_response(model_list([model_id], services.created)["data"][0])


def _names(services: Services) -> list[str]:
    names = list(services.embedding.model_names)
    chat = services.chat
    if chat is not None:
        names += [chat.served_name, *sorted(chat.names - {chat.served_name})]
    if services.reranker is not None:
        names += services.reranker.model_names
    return list(dict.fromkeys(names))
