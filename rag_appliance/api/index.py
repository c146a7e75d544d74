"""POST /v1/index (JSON) and POST /v1/index/upload (multipart files)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from rag_appliance.api.deps import ServicesDep, json_response
from rag_appliance.auth.access import authorize_write
from rag_appliance.errors import InvalidRequest, ServiceUnavailable
from rag_appliance.ingest.files import FileBlob, FileOutcome, index_files, safe_name
from rag_appliance.protocol import responses as bodies
from rag_appliance.protocol.checks import check_text, form_metadata
from rag_appliance.protocol.index import IndexRequest, index_response
from rag_appliance.protocol.openapi import responses

log = logging.getLogger(__name__)

router = APIRouter()

T = TypeVar("T")
# How often a running index call looks for its client having gone.
_DISCONNECT_POLL_S = 0.25


@router.post(
    "/v1/index",
    response_class=Response,
    responses=responses(bodies.IndexResult, 409, 429, 503),
)
async def index_documents(body: IndexRequest, services: ServicesDep, request: Request) -> Response:
    """Chunk, embed and upsert documents; re-sending a document replaces it."""
    authorize_write(body.collection)  # refused before any work (the pipeline checks too)
    pipeline = services.require_pipeline()
    documents = body.to_documents()
    most = services.settings.ingest.max_documents_per_request
    if len(documents) > most:
        raise InvalidRequest(f"at most {most} documents per request", param="documents")
    if not documents:
        raise InvalidRequest("no documents to index", param="documents")
    chunking = body.chunking
    params = pipeline.chunking(
        chunking.max_tokens if chunking else None, chunking.overlap_tokens if chunking else None
    )
    results = await _unless_disconnected(
        request, pipeline.index(body.collection, documents, params)
    )
    return json_response(index_response(body.collection, results))


@router.post(
    "/v1/index/upload",
    response_class=Response,
    responses=responses(bodies.UploadResult, 409, 429, 503),
)
async def upload_files(
    services: ServicesDep,
    request: Request,
    collection: Annotated[str, Form(min_length=1, description="Target collection.")],
    files: Annotated[list[UploadFile], File(description="txt, md, html, pdf or docx files.")],
    metadata: Annotated[
        str | None, Form(description="JSON object stored with every file's chunks.")
    ] = None,
) -> Response:
    """Parse and index uploaded files; each file gets its own result or error."""
    pipeline = services.require_pipeline()
    check_text(collection, "collection")
    authorize_write(collection)  # before the files are read (index_files checks too)
    common = form_metadata(metadata)
    most = services.settings.ingest.max_files_per_upload
    if len(files) > most:
        raise InvalidRequest(f"at most {most} files per upload", param="files")
    _unique_names(files)
    blobs = [
        FileBlob(upload.filename or "", await upload.read(), upload.content_type)
        for upload in files
    ]
    outcomes = await _unless_disconnected(request, index_files(pipeline, collection, blobs, common))
    return json_response(
        {
            "object": "upload.result",
            "collection": collection,
            "files": [_outcome(outcome) for outcome in outcomes],
        }
    )


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """The work's result; cancelled (its uncommitted chunks rolled back) if the client leaves."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                log.info("client of %s left: cancelling the index call", request.url.path)
                break
    except asyncio.CancelledError:
        # The server is stopping (uvicorn cancels requests past its graceful timeout): the
        # client gets a 503, not a 500, once the work is cancelled and rolled back.
        await _cancel(task)
        raise ServiceUnavailable(
            "the server is stopping: the call was cancelled and its uncommitted chunks deleted"
        ) from None
    await _cancel(task)
    raise InvalidRequest(
        "the client disconnected: the call was cancelled and its uncommitted chunks deleted",
        code="client_disconnected",
    )


async def _cancel(task: asyncio.Future[Any]) -> None:
    """Cancel the work and wait for its rollback."""
    if not task.done():
        task.cancel()
        await asyncio.wait({task})


def _unique_names(files: list[UploadFile]) -> None:
    # A file's document id is its cleaned name: two files with one id would collapse silently.
    seen: set[str] = set()
    for i, upload in enumerate(files):
        name = safe_name(upload.filename)
        if name in seen:
            raise InvalidRequest(
                f"two files are named {name!r}: file names must be unique in one upload",
                param=f"files[{i}]",
                code="duplicate_id",
            )
        seen.add(name)


def _outcome(outcome: FileOutcome) -> dict[str, Any]:
    if outcome.error is not None:
        error = {"status": outcome.error.status, **outcome.error.body()["error"]}
        return {"filename": outcome.filename, "status": "error", "error": error}
    return {
        "filename": outcome.filename,
        "status": outcome.status,
        "doc_id": outcome.doc_id,
        "chunks": outcome.chunks,
    }
