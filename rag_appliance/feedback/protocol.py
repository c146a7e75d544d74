"""POST /v1/feedback: the request body."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from rag_appliance.feedback.service import FeedbackParams, Label
from rag_appliance.protocol.checks import check_text, check_texts

# Ids are the appliance's own (uuids, document names): anything longer is not one of them.
_Id = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
MAX_IDS = 100


class FeedbackRequest(BaseModel):
    """Thumbs up or down on chunks or documents of a logged search or chat completion."""

    model_config = ConfigDict(extra="forbid")

    id: _Id = Field(
        description="The `id` of a /v1/search response ('search-...') or of a chat completion "
        "('chatcmpl-...')."
    )
    label: Label = Field(description="'positive' (relevant, helpful) or 'negative'.")
    chunk_ids: list[_Id] | None = Field(
        None,
        max_length=MAX_IDS,
        description="`chunk_id`s of the event's hits or sources this is about.",
    )
    doc_ids: list[_Id] | None = Field(
        None,
        max_length=MAX_IDS,
        description="`doc_id`s of the event's hits or sources this is about (its best chunk "
        "of each is the one exported).",
    )
    comment: str | None = Field(
        None, max_length=2000, description="Free text kept with the feedback in the log."
    )

    @model_validator(mode="after")
    def _unicode(self) -> FeedbackRequest:
        check_text(self.id, "id")
        check_texts(self.chunk_ids, "chunk_ids")
        check_texts(self.doc_ids, "doc_ids")
        check_text(self.comment, "comment")
        return self

    def to_params(self) -> FeedbackParams:
        """The plain parameters (duplicates dropped, order kept)."""
        return FeedbackParams(
            event_id=self.id,
            label=self.label,
            chunk_ids=tuple(dict.fromkeys(self.chunk_ids or ())),
            doc_ids=tuple(dict.fromkeys(self.doc_ids or ())),
            comment=self.comment,
        )
