"""The jobs API's models (the JSON request, the job object) and the job object as plain JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from rag_appliance.protocol.index import IndexRequest
from rag_appliance.protocol.responses import FileError

if TYPE_CHECKING:
    from rag_appliance.jobs.runner import Rate
    from rag_appliance.jobs.store import Job
    from rag_appliance.settings import Settings

JobStatus = Literal["queued", "running", "cancelling", "completed", "failed", "cancelled"]


class IndexJobRequest(IndexRequest):
    """POST /v1/index/jobs as JSON: the body of POST /v1/index, indexed in the background."""


class JobDocuments(BaseModel):
    """A job's items (documents or files): how many, and what became of them so far."""

    total: int
    done: int = Field(description="Indexed or unchanged.")
    failed: int
    indexed: int
    unchanged: int


class JobRate(BaseModel):
    """Throughput since the job started (or resumed) in this server process."""

    documents_per_s: float
    chunks_per_s: float


class JobFailure(BaseModel):
    """One document or file that was not indexed, and why."""

    index: int = Field(description="Its position in the job's input.")
    id: str | None = Field(description="The document's id or the file's name.")
    error: FileError


class IndexJob(BaseModel):
    """An indexing job (POST/GET /v1/index/jobs...)."""

    id: str
    object: Literal["index.job"]
    kind: Literal["documents", "files"]
    collection: str
    status: JobStatus
    documents: JobDocuments
    chunks: int = Field(description="Chunks of the documents done (indexed or unchanged).")
    rate: JobRate | None
    eta_s: float | None = Field(description="Seconds left at the current rate (running jobs).")
    failures: list[JobFailure] = Field(description="The first failures (all are counted).")
    error: FileError | None = Field(description="Why the whole job failed.")
    created_at: int
    started_at: int | None
    finished_at: int | None


class IndexJobList(BaseModel):
    """GET /v1/index/jobs: the jobs on collections the key may read, the newest first."""

    object: Literal["list"]
    data: list[IndexJob]


def job_object(job: Job, rate: Rate | None) -> dict[str, Any]:
    """The job object the API answers."""
    status = job.status
    if status == "running" and job.cancel_requested:
        status = "cancelling"  # type: ignore[assignment]
    per_s = rate.per_second() if rate is not None and job.started_at is not None else None
    left = job.total - len(job.done)
    eta = None
    if per_s is not None and job.status == "running" and per_s[0] > 0:
        eta = round(left / per_s[0], 1)
    return {
        "id": job.id,
        "object": "index.job",
        "kind": job.kind,
        "collection": job.collection,
        "status": status,
        "documents": {
            "total": job.total,
            "done": job.indexed + job.unchanged,
            "failed": job.failed,
            "indexed": job.indexed,
            "unchanged": job.unchanged,
        },
        "chunks": job.chunks,
        "rate": (
            {"documents_per_s": round(per_s[0], 2), "chunks_per_s": round(per_s[1], 2)}
            if per_s is not None
            else None
        ),
        "eta_s": eta,
        "failures": [
            {"index": f["i"], "id": f.get("id"), "error": f["error"]} for f in job.failures
        ],
        "error": job.error,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


_UPLOAD = "IndexJobUpload"


def openapi_schemas(schemas: dict[str, Any], settings: Settings) -> None:
    """The two request bodies of POST /v1/index/jobs, with this server's limits."""
    from rag_appliance.protocol.openapi import COLLECTION_NAME

    ref = "#/components/schemas/{model}"
    body = IndexJobRequest.model_json_schema(ref_template=ref)
    for name, schema in body.pop("$defs", {}).items():
        schemas.setdefault(name, schema)
    most = settings.jobs.max_items
    props = body["properties"]
    props["collection"]["pattern"] = COLLECTION_NAME
    for field in ("documents", "texts"):
        for option in props[field].get("anyOf", [props[field]]):
            if option.get("type") == "array":
                option["maxItems"] = most
    schemas["IndexJobRequest"] = body
    schemas[_UPLOAD] = {
        "title": _UPLOAD,
        "type": "object",
        "required": ["collection", "files"],
        "properties": {
            "collection": {
                "type": "string",
                "minLength": 1,
                "pattern": COLLECTION_NAME,
                "description": "Target collection.",
            },
            "files": {
                "type": "array",
                "items": {"type": "string", "format": "binary"},
                "minItems": 1,
                "maxItems": most,
                "description": "txt, md, html, pdf or docx files.",
            },
            "metadata": {
                "type": "string",
                "description": "JSON object stored with every file's chunks.",
            },
        },
    }


REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/IndexJobRequest"}},
            "multipart/form-data": {"schema": {"$ref": f"#/components/schemas/{_UPLOAD}"}},
        },
    }
}
