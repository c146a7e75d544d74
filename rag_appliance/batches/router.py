"""/v1/files and /v1/batches: the OpenAI Batch API routes (batch.enabled)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response

from rag_appliance.api.deps import get_services, json_response
from rag_appliance.batches import protocol as p
from rag_appliance.batches.files import public
from rag_appliance.batches.service import BatchService
from rag_appliance.errors import ServiceUnavailable
from rag_appliance.protocol.checks import check_text
from rag_appliance.protocol.openapi import responses

router = APIRouter()


def get_batches(request: Request) -> BatchService:
    """The batch service, or a 503 when batch.enabled is off or the app is not serving."""
    services = get_services(request)
    batches: BatchService | None = getattr(services, "batches", None)
    if batches is None:
        raise ServiceUnavailable("the Batch API is disabled (batch.enabled=false)")
    if not services.running:
        raise ServiceUnavailable("the Batch API is not running")
    return batches


BatchesDep = Annotated[BatchService, Depends(get_batches)]
FileId = Annotated[str, Path(description="The file's id (file-...).")]
BatchId = Annotated[str, Path(description="The batch's id (batch_...).")]


def _page(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


@router.post("/v1/files", response_class=Response, responses=responses(p.FileObject, 503))
async def create_file(
    batches: BatchesDep,
    file: Annotated[UploadFile, File(description="A JSONL file of batch requests.")],
    purpose: Annotated[
        str,
        Form(description="Only 'batch' is accepted.", json_schema_extra={"enum": ["batch"]}),
    ],
) -> Response:
    """Upload a batch input file (JSONL, one request per line)."""
    check_text(purpose, "purpose")
    filename = file.filename or "upload.jsonl"
    check_text(filename, "file")
    return json_response(await batches.upload(file.file, filename, purpose))


@router.get("/v1/files", response_class=Response, responses=responses(p.FileList, 503))
async def list_files(
    batches: BatchesDep,
    purpose: Annotated[str | None, Query(description="Only files of this purpose.")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="Most files returned.")] = 10_000,
    after: Annotated[str | None, Query(description="The id to list after.")] = None,
) -> Response:
    """The key's files, newest first."""
    items = batches.list_files(purpose)
    if after is not None:
        ids = [i["id"] for i in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    return json_response(_page(items[:limit], len(items) > limit))


@router.get(
    "/v1/files/{file_id}", response_class=Response, responses=responses(p.FileObject, 404, 503)
)
async def retrieve_file(batches: BatchesDep, file_id: FileId) -> Response:
    """A file's metadata."""
    return json_response(public(batches.file(file_id)))


@router.get(
    "/v1/files/{file_id}/content",
    response_class=Response,
    responses=responses(None, 404, 503, media_type="application/octet-stream"),
)
async def file_content(batches: BatchesDep, file_id: FileId) -> Response:
    """A file's bytes (a batch's output and error files are JSONL)."""
    return FileResponse(batches.file_path(file_id), media_type="application/octet-stream")


@router.delete(
    "/v1/files/{file_id}",
    response_class=Response,
    responses=responses(p.FileDeleted, 404, 409, 503),
)
async def delete_file(batches: BatchesDep, file_id: FileId) -> Response:
    """Delete a file (409 while an unfinished batch reads it)."""
    return json_response(batches.delete_file(file_id))


@router.post("/v1/batches", response_class=Response, responses=responses(p.BatchObject, 404, 503))
async def create_batch(batches: BatchesDep, body: p.BatchCreateRequest) -> Response:
    """Start a batch over an uploaded file; it runs behind interactive requests."""
    state = batches.create(body.input_file_id, body.endpoint, body.checked_metadata())
    return json_response(p.batch_body(state))


@router.get("/v1/batches", response_class=Response, responses=responses(p.BatchList, 503))
async def list_batches(
    batches: BatchesDep,
    after: Annotated[str | None, Query(description="The batch id to list after.")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Most batches returned.")] = 20,
) -> Response:
    """The key's batches, newest first."""
    states, more = batches.list(after, limit)
    return json_response(_page([p.batch_body(s) for s in states], more))


@router.get(
    "/v1/batches/{batch_id}",
    response_class=Response,
    responses=responses(p.BatchObject, 404, 503),
)
async def retrieve_batch(batches: BatchesDep, batch_id: BatchId) -> Response:
    """A batch's status, counts and result files."""
    return json_response(p.batch_body(batches.batch(batch_id)))


@router.post(
    "/v1/batches/{batch_id}/cancel",
    response_class=Response,
    responses=responses(p.BatchObject, 404, 409, 503),
)
async def cancel_batch(batches: BatchesDep, batch_id: BatchId) -> Response:
    """Cancel a batch; what it finished so far stays in its output file."""
    return json_response(p.batch_body(batches.cancel(batch_id)))
