"""POST /v1/rerank (also /rerank and /v2/rerank, the paths vLLM serves it on)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from rag_appliance.api.deps import ServicesDep, json_response
from rag_appliance.rerank.protocol import RerankRequest, rerank_response

router = APIRouter()


@router.post("/v1/rerank", response_class=Response)
@router.post("/v2/rerank", response_class=Response, include_in_schema=False)
@router.post("/rerank", response_class=Response, include_in_schema=False)
async def rerank(body: RerankRequest, services: ServicesDep) -> Response:
    """Rank documents by relevance to a query with the cross-encoder."""
    reranker = services.require_reranker()
    model = reranker.check_model(body.model)
    params = body.to_params()
    result = await reranker.rerank(params.query, params.documents, params.top_n)
    return json_response(rerank_response(result, model, params))
