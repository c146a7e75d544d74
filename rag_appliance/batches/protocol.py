"""Request and response models of /v1/files and /v1/batches, in OpenAI's shapes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag_appliance.errors import InvalidRequest

BatchStatus = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]


class ExpiresAfter(BaseModel):
    """OpenAI's expiry policy of output files; accepted, and stored, but files never expire."""

    model_config = ConfigDict(extra="forbid", strict=True)

    anchor: Literal["created_at"]
    seconds: int = Field(ge=3600, le=2_592_000)


class BatchCreateRequest(BaseModel):
    """The body of POST /v1/batches."""

    model_config = ConfigDict(extra="forbid", strict=True)

    input_file_id: str = Field(description="A file uploaded with purpose 'batch'.")
    endpoint: Literal["/v1/embeddings", "/v1/index"] = Field(
        description="'/v1/embeddings', or the extension '/v1/index': each line a /v1/index "
        "body, embedded and indexed into its collection."
    )
    completion_window: Literal["24h"] = Field(description="Only '24h', as OpenAI.")
    metadata: dict[str, str] | None = Field(
        None, description="Up to 16 pairs; keys of at most 64, values of at most 512 characters."
    )
    output_expires_after: ExpiresAfter | None = Field(
        None, description="Accepted for compatibility; this server keeps files until deleted."
    )

    def checked_metadata(self) -> dict[str, str] | None:
        """The metadata within OpenAI's limits (400 naming the parameter otherwise)."""
        meta = self.metadata
        if meta is None:
            return None
        if len(meta) > 16:
            raise InvalidRequest("'metadata' may have at most 16 pairs", param="metadata")
        for key, value in meta.items():
            if len(key) > 64 or len(value) > 512:
                raise InvalidRequest(
                    "'metadata' keys may have at most 64 and values 512 characters",
                    param="metadata",
                )
        return meta


class FileObject(BaseModel):
    """OpenAI's File object."""

    id: str
    object: Literal["file"]
    bytes: int
    created_at: int
    filename: str
    purpose: Literal["batch", "batch_output"]
    status: Literal["uploaded", "processed", "error"]
    expires_at: int | None
    status_details: str | None


class FileList(BaseModel):
    """GET /v1/files."""

    object: Literal["list"]
    data: list[FileObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileDeleted(BaseModel):
    """DELETE /v1/files/{file_id}."""

    id: str
    object: Literal["file"]
    deleted: bool


class BatchErrorItem(BaseModel):
    """One problem found while validating the input file."""

    code: str
    message: str
    param: str | None
    line: int | None


class BatchErrors(BaseModel):
    """The batch's `errors`."""

    object: Literal["list"]
    data: list[BatchErrorItem]


class RequestCounts(BaseModel):
    """Requests in the batch, and how many have finished each way."""

    total: int
    completed: int
    failed: int


class BatchObject(BaseModel):
    """OpenAI's Batch object."""

    id: str
    object: Literal["batch"]
    endpoint: str
    errors: BatchErrors | None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None
    error_file_id: str | None
    created_at: int
    in_progress_at: int | None
    expires_at: int | None
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None
    cancelling_at: int | None
    cancelled_at: int | None
    request_counts: RequestCounts
    metadata: dict[str, str] | None


class BatchList(BaseModel):
    """GET /v1/batches: newest first, paged by `after`."""

    object: Literal["list"]
    data: list[BatchObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


BATCH_FIELDS = tuple(BatchObject.model_fields)


def batch_body(state: dict[str, Any]) -> dict[str, Any]:
    """The Batch object of a journal's state (its private fields left out)."""
    return {name: state.get(name) for name in BATCH_FIELDS}
