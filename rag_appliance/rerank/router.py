"""POST /v1/rerank (also /rerank and /v2/rerank, the paths vLLM serves it on)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from rag_appliance.api.deps import ServicesDep, json_response
from rag_appliance.protocol import generation as bodies
from rag_appliance.protocol.openapi import responses
from rag_appliance.rerank.protocol import RerankRequest, rerank_response

router = APIRouter()
_RESPONSES = responses(bodies.RerankResult, 404, 429, 503)


@router.post("/v1/rerank", response_class=Response, responses=_RESPONSES)
@router.post("/v2/rerank", response_class=Response, responses=_RESPONSES)
@router.post("/rerank", response_class=Response, responses=_RESPONSES)
async def rerank(body: RerankRequest, services: ServicesDep) -> Response:
    """Rank documents by relevance to a query with the cross-encoder."""
    reranker = services.require_reranker()
    model = reranker.check_model(body.model)
    params = body.to_params()
    result = await reranker.rerank(params.query, params.documents, params.top_n)
    return json_response(rerank_response(result, model, params))
