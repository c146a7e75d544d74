"""GET /metrics: Prometheus exposition of the app's metrics (and vLLM's, once it has some)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from rag_appliance.protocol.openapi import responses
from rag_appliance.services import Services

router = APIRouter()


@router.get(
    "/metrics",
    response_class=Response,
    responses=responses(
        None, description="Prometheus text format.", media_type=CONTENT_TYPE_LATEST
    ),
)
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    services: Services = request.app.state.services
    return Response(services.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
