"""Feedback on a logged search or answer: checked against the event, then logged."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rag_appliance.auth.access import authorize_read, current_principal
from rag_appliance.errors import InvalidRequest, NotFound, ServiceUnavailable
from rag_appliance.feedback.log import SearchLog, new_id, now

Label = Literal["positive", "negative"]
DISABLED = (
    "Feedback needs the search log, which is off: set search_log.enabled: true in the config "
    "(or RAG_SEARCH_LOG__ENABLED=true) and restart; see docs/feedback.md."
)


@dataclass(frozen=True)
class FeedbackParams:
    """One judgement of chunks or documents a logged event returned."""

    event_id: str
    label: Label
    chunk_ids: tuple[str, ...] = ()
    doc_ids: tuple[str, ...] = ()
    comment: str | None = None


async def submit_feedback(search_log: SearchLog | None, params: FeedbackParams) -> dict[str, Any]:
    """Log the feedback and return its object; 503 when logging is off, 404 for an unknown
    event, 403 when the key may not read the event's collection, 400 for ids it did not return.
    """
    if search_log is None:
        raise ServiceUnavailable(DISABLED, code="search_log_disabled")
    if not params.chunk_ids and not params.doc_ids:
        raise InvalidRequest(
            "give 'chunk_ids' or 'doc_ids': the results this feedback is about",
            param="chunk_ids",
        )
    event = await search_log.find(params.event_id)
    if event is None:
        raise NotFound(
            f"No logged search or chat completion has id '{params.event_id}' (the search log "
            "keeps what was logged while it was on, within its rotation).",
            param="id",
            code="event_not_found",
        )
    authorize_read(event.collection)
    _check_subset(params.chunk_ids, event.chunk_ids, "chunk_ids", params.event_id)
    _check_subset(params.doc_ids, event.doc_ids, "doc_ids", params.event_id)
    principal = current_principal()
    feedback_id = new_id("feedback")
    record: dict[str, Any] = {
        "type": "feedback",
        "id": feedback_id,
        "time": now(),
        "event_id": event.id,
        "collection": event.collection,
        "label": params.label,
        "chunk_ids": list(params.chunk_ids),
        "doc_ids": list(params.doc_ids),
        "key": principal.name if principal else None,
    }
    if params.comment:
        record["comment"] = params.comment
    await search_log.write(record)
    return {
        "id": feedback_id,
        "object": "feedback",
        "created": int(time.time()),
        "event_id": event.id,
        "collection": event.collection,
        "label": params.label,
        "chunk_ids": list(params.chunk_ids),
        "doc_ids": list(params.doc_ids),
    }


def _check_subset(given: Sequence[str], returned: Sequence[str], param: str, event: str) -> None:
    known = set(returned)
    for i, value in enumerate(given):
        if value not in known:
            raise InvalidRequest(
                f"'{param}[{i}]' ({value!r}) is not among the results of '{event}'",
                param=param,
                code="invalid_value",
            )
