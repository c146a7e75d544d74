"""Collection and document management: /v1/collections..."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from rag_appliance.api.deps import ServicesDep, json_response
from rag_appliance.protocol import responses as bodies
from rag_appliance.protocol.openapi import responses
from rag_appliance.store.base import CollectionInfo

router = APIRouter()


def _collection(info: CollectionInfo, documents: int) -> dict[str, Any]:
    return {
        "id": info.name,
        "object": "collection",
        "documents": documents,
        # Committed chunks: those of the listed documents. In-flight index calls' (uncommitted,
        # not searched) apart, so `points` and `documents` agree at all times.
        "points": info.points_count,
        "pending_points": getattr(info, "pending_points", 0),
        "created_at": info.created_at,
        "provenance": asdict(info.provenance),
        # BM25 sparse vectors (sparse and hybrid search); false for a dense-only collection.
        "sparse": info.bm25 is not None,
        "bm25": None if info.bm25 is None else asdict(info.bm25),
        # An alias (re-indexed, blue/green): the collection version it points to now.
        "version": info.version,
    }


@router.get(
    "/v1/collections", response_class=Response, responses=responses(bodies.CollectionList, 503)
)
async def list_collections(services: ServicesDep) -> Response:
    """Every collection with its counts and provenance."""
    rows = await services.require_collections().all()
    return json_response({"object": "list", "data": [_collection(i, n) for i, n in rows]})


@router.get(
    "/v1/collections/{name}",
    response_class=Response,
    responses=responses(bodies.Collection, 404, 503),
)
async def get_collection(name: str, services: ServicesDep) -> Response:
    """One collection; 404 when missing."""
    info, documents = await services.require_collections().get(name)
    return json_response(_collection(info, documents))


@router.delete(
    "/v1/collections/{name}",
    response_class=Response,
    responses=responses(bodies.Deleted, 404, 503),
)
async def delete_collection(name: str, services: ServicesDep) -> Response:
    """Drop a collection and its data."""
    await services.require_collections().delete(name)
    return json_response({"id": name, "object": "collection", "deleted": True})


@router.post(
    "/v1/collections/{name}/sparse",
    response_class=Response,
    responses=responses(bodies.Collection, 404, 409, 503),
)
async def enable_sparse(name: str, services: ServicesDep) -> Response:
    """Give a dense-only collection BM25 sparse vectors from its stored chunk text, in place.

    Nothing is re-embedded; the collection serves searches and writes meanwhile, and the call
    returns when it is done (seconds to minutes). A collection that has them is left as it is.
    """
    collections = services.require_collections()
    await collections.enable_sparse(name)
    info, documents = await collections.get(name)
    return json_response(_collection(info, documents))


@router.get(
    "/v1/collections/{name}/documents",
    response_class=Response,
    responses=responses(bodies.DocumentPage, 404, 503),
)
async def list_documents(
    name: str,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 100,
    after: Annotated[str | None, Query(description="Cursor from the previous page.")] = None,
) -> Response:
    """One page of documents; follow `next` for the rest."""
    docs, cursor = await services.require_collections().documents(name, limit, after)
    return json_response(
        {
            "object": "list",
            "data": [{"object": "document", **asdict(d)} for d in docs],
            "next": cursor,
            "has_more": cursor is not None,
        }
    )


@router.get(
    "/v1/collections/{name}/documents/{doc_id:path}",
    response_class=Response,
    responses=responses(bodies.DocumentChunks, 404, 503),
)
async def get_document(name: str, doc_id: str, services: ServicesDep) -> Response:
    """One document: its listing fields and every chunk's text in order; 404 when missing.

    Chunks overlap by the chunking overlap, so their texts are given one by one, not joined.
    Citations' `url` points here.
    """
    info, chunks = await services.require_collections().document(name, doc_id)
    return json_response(
        {
            "object": "document",
            **asdict(info),
            "collection": name,
            "data": [{"index": i, "text": t} for i, t in enumerate(chunks)],
        }
    )


@router.delete(
    "/v1/collections/{name}/documents/{doc_id:path}",
    response_class=Response,
    responses=responses(bodies.Deleted, 404, 503),
)
async def delete_document(name: str, doc_id: str, services: ServicesDep) -> Response:
    """Remove one document's chunks; 404 when it is not there."""
    chunks = await services.require_collections().delete_document(name, doc_id)
    return json_response({"id": doc_id, "object": "document", "deleted": True, "chunks": chunks})
