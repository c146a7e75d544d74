"""POST /v1/search."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter
from fastapi.responses import Response

from rag_appliance.api.deps import ServicesDep, json_response
from rag_appliance.feedback.log import chunk_id, new_id
from rag_appliance.protocol import responses as bodies
from rag_appliance.protocol.index import SearchRequest
from rag_appliance.protocol.openapi import responses

router = APIRouter()


@router.post(
    "/v1/search",
    response_class=Response,
    responses=responses(bodies.SearchResult, 404, 409, 429, 503),
)
async def search(body: SearchRequest, services: ServicesDep) -> Response:
    """Dense, BM25 or hybrid search over a collection's fully indexed chunks."""
    retriever = services.require_retriever()
    result = await retriever.run(
        body.collection,
        body.query,
        body.top_k,
        body.filter,
        body.score_threshold,
        options=body.options(),
    )
    search_id = new_id("search")  # what POST /v1/feedback names
    model = retriever.embedding.served_name
    if services.search_log is not None:
        services.search_log.record_search(
            search_id, body.collection, body.query, result.hits, mode=result.mode, model=model
        )
    return json_response(
        {
            "id": search_id,
            "object": "list",
            "collection": body.collection,
            "model": model,
            "mode": result.mode,
            "fusion": result.fusion,
            "reranked": result.reranked,
            "data": [{"chunk_id": chunk_id(h), **asdict(h)} for h in result.hits],
        }
    )
