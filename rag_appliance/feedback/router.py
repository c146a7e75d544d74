"""POST /v1/feedback."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from rag_appliance.api.deps import ServicesDep, json_response
from rag_appliance.feedback.protocol import FeedbackRequest
from rag_appliance.feedback.service import submit_feedback
from rag_appliance.protocol import responses as bodies
from rag_appliance.protocol.openapi import responses

router = APIRouter()


@router.post(
    "/v1/feedback",
    response_class=Response,
    responses=responses(bodies.Feedback, 404, 503),
)
async def feedback(body: FeedbackRequest, services: ServicesDep) -> Response:
    """Judge chunks or documents of a logged search or chat completion (search_log.enabled)."""
    return json_response(await submit_feedback(services.search_log, body.to_params()))
