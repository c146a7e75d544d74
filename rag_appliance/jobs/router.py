"""POST/GET /v1/index/jobs, GET /v1/index/jobs/{job_id}, POST /v1/index/jobs/{job_id}/cancel."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from rag_appliance.api.deps import ServicesDep, json_response
from rag_appliance.auth.access import authorize_read, authorize_write, current_principal
from rag_appliance.errors import (
    InvalidRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from rag_appliance.jobs.protocol import (
    REQUEST_BODY,
    IndexJob,
    IndexJobList,
    IndexJobRequest,
    job_object,
)
from rag_appliance.jobs.runner import JobNotFound, JobRunner
from rag_appliance.jobs.store import Job, Spool, valid_id
from rag_appliance.jobs.submit import check_target, new_job, spooled, unique_names
from rag_appliance.protocol.checks import check_text, form_metadata
from rag_appliance.protocol.openapi import responses
from rag_appliance.services import Services

router = APIRouter()

_MISSING = "missing_required_parameter"


@router.post(
    "/v1/index/jobs",
    response_class=Response,
    responses=responses(IndexJob, 400, 409, 413, 415, 503, description="The job, queued."),
    openapi_extra=REQUEST_BODY,
)
async def create_job(request: Request, services: ServicesDep) -> Response:
    """Queue documents (JSON) or files (multipart) for indexing; answers the job at once."""
    runner = services.require_jobs()
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/json":
        job = await _from_json(request, services, runner)
    elif media in ("multipart/form-data", "application/x-www-form-urlencoded"):
        job = await _from_form(request, services, runner)
    else:
        raise UnsupportedMediaType(
            "send the job as application/json (documents) or multipart/form-data (files)"
        )
    runner.submit(job)
    return json_response(job_object(job, None))


@router.get("/v1/index/jobs", response_class=Response, responses=responses(IndexJobList, 503))
async def list_jobs(services: ServicesDep) -> Response:
    """The jobs on collections this key may read, the newest first."""
    runner = services.require_jobs()
    principal = current_principal()
    data = [
        job_object(job, runner.rates.get(job.id))
        for job in runner.newest_first()
        if principal is None or principal.can_read(job.collection)
    ]
    return json_response({"object": "list", "data": data})


@router.get(
    "/v1/index/jobs/{job_id}", response_class=Response, responses=responses(IndexJob, 404, 503)
)
async def get_job(job_id: str, services: ServicesDep) -> Response:
    """One job: status, counts, failures, rate and ETA."""
    runner = services.require_jobs()
    job = _job(runner, job_id)
    authorize_read(job.collection)
    return json_response(job_object(job, runner.rates.get(job.id)))


@router.post(
    "/v1/index/jobs/{job_id}/cancel",
    response_class=Response,
    responses=responses(IndexJob, 404, 503),
)
async def cancel_job(job_id: str, services: ServicesDep) -> Response:
    """Cancel a job: a queued one at once, a running one after its current batch."""
    runner = services.require_jobs()
    job = _job(runner, job_id)
    authorize_write(job.collection)
    job = await runner.cancel(job)
    return json_response(job_object(job, runner.rates.get(job.id)))


def _job(runner: JobRunner, job_id: str) -> Job:
    if not valid_id(job_id):
        raise JobNotFound(f"no indexing job '{job_id}'", param="job_id")
    return runner.get(job_id)


async def _from_json(request: Request, services: Services, runner: JobRunner) -> Job:
    limits = services.settings.jobs
    raw = bytearray()
    async for part in request.stream():
        raw += part
        if len(raw) > limits.max_json_bytes:
            raise PayloadTooLarge(
                f"a JSON job is at most {limits.max_json_bytes:,} bytes (jobs.max_json_bytes); "
                "send files as multipart/form-data"
            )
    try:
        body = IndexJobRequest.model_validate_json(bytes(raw))
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    documents = body.to_documents()
    _count(len(documents), limits.max_items, "documents")
    await check_target(services, body.collection)
    chunking = None
    if body.chunking is not None:
        services.require_pipeline().chunking(body.chunking.max_tokens, body.chunking.overlap_tokens)
        chunking = body.chunking.model_dump()
    job = new_job(runner, "documents", body.collection, {}, chunking)

    def spool(into: Spool) -> None:
        for doc in documents:
            into.add_document(
                {"text": doc.text, "id": doc.id, "metadata": doc.metadata, "source": doc.source}
            )

    return await spooled(runner, job, spool, limits.max_job_bytes)


async def _from_form(request: Request, services: Services, runner: JobRunner) -> Job:
    limits = services.settings.jobs
    form = await request.form(max_files=limits.max_items, max_fields=16)
    try:
        collection = form.get("collection")
        if not isinstance(collection, str) or not collection:
            raise InvalidRequest("'collection' is required", param="collection", code=_MISSING)
        check_text(collection, "collection")
        uploads = form.getlist("files")
        if not uploads:
            raise InvalidRequest("'files' is required", param="files", code=_MISSING)
        files = [u for u in uploads if isinstance(u, UploadFile)]
        if len(files) != len(uploads):
            raise InvalidRequest("'files' must be files, not text fields", param="files")
        _count(len(files), limits.max_items, "files")
        names = unique_names([u.filename for u in files])
        metadata = form_metadata(form.get("metadata"))
        await check_target(services, collection)
        job = new_job(runner, "files", collection, metadata, None)

        def spool(into: Spool) -> None:
            for name, upload in zip(names, files, strict=True):
                upload.file.seek(0)
                into.add_file(name, upload.content_type, upload.file)

        return await spooled(runner, job, spool, limits.max_job_bytes)
    finally:
        await form.close()


def _count(count: int, most: int, param: str) -> None:
    if count > most:
        raise InvalidRequest(f"at most {most:,} {param} per job (jobs.max_items)", param=param)
    if count == 0:
        raise InvalidRequest(f"no {param} to index", param=param)
