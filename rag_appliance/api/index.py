"""POST /v1/index (JSON) and POST /v1/index/upload (multipart files)."""

from __future__ import annotations

import asyncio
import json
from pathlib import PurePosixPath, PureWindowsPath
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import Response

from rag_appliance.api.deps import ServicesDep, json_response
from rag_appliance.errors import AppError, InvalidRequest
from rag_appliance.ingest.parsers import parse
from rag_appliance.ingest.pipeline import Document
from rag_appliance.protocol.index import IndexRequest, index_response

router = APIRouter()


@router.post("/v1/index", response_class=Response)
async def index_documents(body: IndexRequest, services: ServicesDep) -> Response:
    """Chunk, embed and upsert documents; re-sending a document replaces it."""
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
    results = await pipeline.index(body.collection, documents, params)
    return json_response(index_response(body.collection, results))


@router.post("/v1/index/upload", response_class=Response)
async def upload_files(
    services: ServicesDep,
    collection: Annotated[str, Form(min_length=1, description="Target collection.")],
    files: Annotated[list[UploadFile], File(description="txt, md, html, pdf or docx files.")],
    metadata: Annotated[
        str | None, Form(description="JSON object stored with every file's chunks.")
    ] = None,
) -> Response:
    """Parse and index uploaded files; each file gets its own result or error."""
    pipeline = services.require_pipeline()
    common = _metadata(metadata)
    most = services.settings.ingest.max_files_per_upload
    if len(files) > most:
        raise InvalidRequest(f"at most {most} files per upload", param="files")
    outcomes: list[dict[str, Any]] = []
    documents: list[tuple[int, Document]] = []
    for upload in files:
        name = safe_name(upload.filename)
        data = await upload.read()
        try:
            parsed = await asyncio.to_thread(parse, data, name, upload.content_type)
        except AppError as exc:
            outcomes.append({"filename": name, "status": "error", "error": _error(exc)})
            continue
        meta = {**common, "filename": name, "media_type": parsed.media_type}
        if parsed.title:
            meta["title"] = parsed.title
        documents.append(
            (len(outcomes), Document(parsed.text, id=name, metadata=meta, source=name))
        )
        outcomes.append({"filename": name, "status": "pending"})
    if documents:
        results = await pipeline.index(collection, [doc for _, doc in documents])
        by_id = {r.doc_id: r for r in results}
        for slot, doc in documents:
            result = by_id[doc.id or ""]
            outcomes[slot] |= {
                "doc_id": result.doc_id,
                "chunks": result.chunks,
                "status": result.status,
            }
    return json_response({"object": "upload.result", "collection": collection, "files": outcomes})


def safe_name(filename: str | None) -> str:
    """The bare file name a client sent (never a path), used as document id and source."""
    raw = filename or "upload"
    name = PurePosixPath(PureWindowsPath(raw).name).name.strip()
    return name.replace("\x00", "") or "upload"


def _metadata(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise InvalidRequest("'metadata' must be a JSON object", param="metadata") from None
    if not isinstance(value, dict):
        raise InvalidRequest("'metadata' must be a JSON object", param="metadata")
    return value


def _error(exc: AppError) -> dict[str, Any]:
    return {"status": exc.status, **exc.body()["error"]}
