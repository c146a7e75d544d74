"""Models of the 200 bodies, for the OpenAPI document only: the routes answer through orjson.

Each model lists the fields the route always sends (required) and those it may add; extension
fields beyond them stay allowed, as in OpenAI's own objects.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Usage(BaseModel):
    """Token counts of a request."""

    prompt_tokens: int
    total_tokens: int


class Embedding(BaseModel):
    """One input's vector: floats, or a base64 little-endian float32 buffer."""

    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class EmbeddingList(BaseModel):
    """POST /v1/embeddings."""

    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: Usage


class DocumentOutcome(BaseModel):
    """One document of an index request."""

    id: str
    chunks: int
    status: Literal["indexed", "unchanged"]


class IndexResult(BaseModel):
    """POST /v1/index."""

    object: Literal["index.result"]
    collection: str
    indexed: int
    unchanged: int
    chunks: int
    documents: list[DocumentOutcome]


class FileError(BaseModel):
    """Why one uploaded file was not indexed: its HTTP status and the OpenAI error fields."""

    status: int
    message: str
    type: str
    param: str | None
    code: str | None


class FileOutcome(BaseModel):
    """One uploaded file: indexed or unchanged (doc_id, chunks), or an error."""

    filename: str
    status: Literal["indexed", "unchanged", "error"]
    doc_id: str | None = None
    chunks: int | None = None
    error: FileError | None = None


class UploadResult(BaseModel):
    """POST /v1/index/upload."""

    object: Literal["upload.result"]
    collection: str
    files: list[FileOutcome]


class SearchHit(BaseModel):
    """One retrieved chunk."""

    doc_id: str
    chunk_index: int
    text: str
    score: float
    metadata: dict[str, Any]
    source: str | None


class SearchResult(BaseModel):
    """POST /v1/search."""

    object: Literal["list"]
    collection: str
    model: str
    mode: Literal["dense", "sparse", "hybrid"]
    fusion: str | None
    reranked: bool
    data: list[SearchHit]


class Provenance(BaseModel):
    """The embedding model a collection was built with."""

    model: str
    dimension: int
    distance: str
    document_prefix: str


class Collection(BaseModel):
    """A collection with its counts, provenance and BM25 settings (null: dense only)."""

    id: str
    object: Literal["collection"]
    documents: int
    points: int = Field(description="Committed chunks: exactly those of the listed documents.")
    pending_points: int = Field(
        0, description="Uncommitted chunks of index calls in flight (never searched or listed)."
    )
    created_at: str
    provenance: Provenance
    sparse: bool
    bm25: dict[str, Any] | None


class CollectionList(BaseModel):
    """GET /v1/collections."""

    object: Literal["list"]
    data: list[Collection]


class Deleted(BaseModel):
    """A deleted collection or document (`chunks`: how many chunks a document had)."""

    id: str
    object: Literal["collection", "document"]
    deleted: Literal[True]
    chunks: int | None = None


class DocumentSummary(BaseModel):
    """A document as listed."""

    object: Literal["document"]
    id: str
    chunks: int
    source: str | None
    metadata: dict[str, Any]
    indexed_at: str | None


class DocumentPage(BaseModel):
    """GET /v1/collections/{name}/documents: one page; `next` is the cursor for `after`."""

    object: Literal["list"]
    data: list[DocumentSummary]
    next: str | None
    has_more: bool


class ChunkText(BaseModel):
    """One chunk's text, in document order."""

    index: int
    text: str


class DocumentChunks(DocumentSummary):
    """GET /v1/collections/{name}/documents/{doc_id}: the document and its chunks."""

    collection: str
    data: list[ChunkText]


class Model(BaseModel):
    """An OpenAI model object."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    """GET /v1/models."""

    object: Literal["list"]
    data: list[Model]


class Health(BaseModel):
    """GET /health."""

    status: Literal["ok"]


class Ready(BaseModel):
    """GET /ready; the details only for admins (or everyone without server.protect_ops)."""

    status: Literal["ready", "unavailable"]
    embedding: dict[str, Any] | None = Field(None, description="Model, dimension, engine stats.")
    generator: dict[str, Any] | None = Field(None, description="null without a generator.")
    store: dict[str, Any] | None = Field(None, description="The store backend.")


class Feedback(BaseModel):
    """POST /v1/feedback: the logged feedback."""

    id: str
    object: Literal["feedback"]
    created: int
    event_id: str
    collection: str
    label: str
    chunk_ids: list[str]
    doc_ids: list[str]
