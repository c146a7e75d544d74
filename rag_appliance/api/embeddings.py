"""POST /v1/embeddings."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from rag_appliance.api.deps import EmbeddingDep, json_response
from rag_appliance.protocol import responses as bodies
from rag_appliance.protocol.embeddings import EmbeddingRequest, embedding_response
from rag_appliance.protocol.openapi import responses

router = APIRouter()


@router.post(
    "/v1/embeddings",
    response_class=Response,
    responses=responses(bodies.EmbeddingList, 404, 429, 503),
)
async def create_embeddings(body: EmbeddingRequest, service: EmbeddingDep) -> Response:
    """Embed one or many inputs, OpenAI-compatible."""
    model = service.check_model(body.model)
    result = await service.embed(body.to_params())
    return json_response(embedding_response(result, model, body.encoding_format))
