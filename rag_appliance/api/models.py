"""GET /v1/models."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from rag_appliance.api.deps import ServicesDep, json_response
from rag_appliance.errors import ModelNotFound
from rag_appliance.protocol.models import model_list

router = APIRouter()


@router.get("/v1/models", response_class=Response)
async def list_models(services: ServicesDep) -> Response:
    """The served models and their aliases, OpenAI-shaped."""
    return json_response(model_list(services.embedding.model_names, services.created))


@router.get("/v1/models/{model_id:path}", response_class=Response)
async def get_model(model_id: str, services: ServicesDep) -> Response:
    """One model, OpenAI-shaped; 404 model_not_found when unknown."""
    if model_id not in services.embedding.model_names:
        raise ModelNotFound(f"The model '{model_id}' does not exist", param="model")
    return json_response(model_list([model_id], services.created)["data"][0])
