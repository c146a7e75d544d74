"""POST /v1/search."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter
from fastapi.responses import Response

from rag_appliance.api.deps import ServicesDep, json_response
from rag_appliance.protocol.index import SearchRequest

router = APIRouter()


@router.post("/v1/search", response_class=Response)
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
    return json_response(
        {
            "object": "list",
            "collection": body.collection,
            "model": retriever.embedding.served_name,
            "mode": result.mode,
            "fusion": result.fusion,
            "reranked": result.reranked,
            "data": [asdict(h) for h in result.hits],
        }
    )
