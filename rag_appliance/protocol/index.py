"""Request/response models of /v1/index, /v1/search and /v1/collections (our extensions)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rag_appliance.errors import InvalidRequest
from rag_appliance.ingest.pipeline import DocResult, Document
from rag_appliance.protocol.checks import INVALID, check_json, check_text, check_texts
from rag_appliance.retrieval.retriever import SearchOptions

COLLECTION = Field(description="Target collection (created on first index).", min_length=1)


class DocumentIn(BaseModel):
    """One document of an index request."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str | None = Field(
        None, min_length=1, max_length=512, description="Stable id; default: from content hash."
    )
    text: str = Field(min_length=1, description="The document's text.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Stored with each chunk.")
    source: str | None = Field(None, description="Where the document came from (file, URL).")


class ChunkingIn(BaseModel):
    """Per-request chunking overrides."""

    model_config = ConfigDict(extra="forbid", strict=True)

    max_tokens: int | None = Field(None, ge=8, description="Chunk size in model tokens.")
    overlap_tokens: int | None = Field(None, ge=0, description="Tokens shared by neighbours.")


class IndexRequest(BaseModel):
    """POST /v1/index: `documents`, or the simple form `texts` (+ optional `ids`)."""

    # The schema says what _one_form enforces: exactly one of `documents` / `texts` (a null
    # one counts as absent), `ids` only beside `texts`.
    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # as the schema says: no "8" for 8, no 0 for false
        json_schema_extra={
            "anyOf": [
                {
                    "required": ["documents"],
                    "properties": {
                        "documents": {"type": "array"},
                        "texts": {"type": "null"},
                        "ids": {"type": "null"},
                    },
                },
                {
                    "required": ["texts"],
                    "properties": {"texts": {"type": "array"}, "documents": {"type": "null"}},
                },
            ]
        },
    )

    collection: str = COLLECTION
    documents: list[DocumentIn] | None = Field(
        None, description="Documents to index.", json_schema_extra={"minItems": 1}
    )
    texts: list[str] | None = Field(
        None, description="Simple form: one document per text.", json_schema_extra={"minItems": 1}
    )
    ids: list[str] | None = Field(
        None, description="Simple form: one id per text of `texts`, in order (as many)."
    )
    metadata: dict[str, Any] | None = Field(
        None, description="Metadata merged into every document's own."
    )
    chunking: ChunkingIn | None = Field(None, description="Chunking overrides.")

    @model_validator(mode="after")
    def _one_form(self) -> IndexRequest:
        # InvalidRequest, not ValueError: a ValueError's 400 would name no param (the body).
        if self.documents is None and self.texts is None:
            raise InvalidRequest(
                "send 'documents' or 'texts' (the simple form)",
                param="documents",
                code="missing_required_parameter",
            )
        if self.documents is not None and self.texts is not None:
            raise InvalidRequest(
                "send 'documents' or 'texts', not both", param="texts", code=INVALID
            )
        if self.ids is not None and self.texts is None:
            raise InvalidRequest(
                "'ids' goes with 'texts'; in 'documents' each document has its own 'id'",
                param="ids",
                code=INVALID,
            )
        if self.ids is not None and self.texts is not None and len(self.ids) != len(self.texts):
            raise InvalidRequest(
                f"'ids' has {len(self.ids)} items and 'texts' {len(self.texts)}: "
                "give one id per text",
                param="ids",
                code=INVALID,
            )
        return self

    @model_validator(mode="after")
    def _storable(self) -> IndexRequest:
        # Every document checked before any is written: one bad document refuses the batch.
        check_text(self.collection, "collection")
        if self.metadata is not None:
            check_json(self.metadata, "metadata")
        check_texts(self.texts, "texts")
        check_texts(self.ids, "ids")
        for i, doc in enumerate(self.documents or ()):
            where = f"documents[{i}]"
            check_text(doc.id, f"{where}.id")
            check_text(doc.text, f"{where}.text")
            check_text(doc.source, f"{where}.source")
            check_json(doc.metadata, f"{where}.metadata")
        ids = [d.id for d in self.documents] if self.documents is not None else self.ids or []
        seen: set[str] = set()
        for i, doc_id in enumerate(ids):
            if doc_id is None:
                continue
            if doc_id in seen:
                where = f"documents[{i}].id" if self.documents is not None else f"ids[{i}]"
                raise InvalidRequest(
                    f"duplicate document id {doc_id!r} in one request: ids must be unique",
                    param=where,
                    code="duplicate_id",
                )
            seen.add(doc_id)
        return self

    def to_documents(self) -> list[Document]:
        """Plain documents for the pipeline."""
        common = self.metadata or {}
        if self.documents is not None:
            return [
                Document(text=d.text, id=d.id, metadata={**common, **d.metadata}, source=d.source)
                for d in self.documents
            ]
        ids: list[str | None] = list(self.ids) if self.ids else [None] * len(self.texts or [])
        return [
            Document(text=t, id=i, metadata=dict(common))
            for t, i in zip(self.texts or [], ids, strict=True)
        ]


def index_response(collection: str, results: list[DocResult]) -> dict[str, Any]:
    """Summary and per-document outcome."""
    return {
        "object": "index.result",
        "collection": collection,
        "indexed": sum(r.status == "indexed" for r in results),
        "unchanged": sum(r.status == "unchanged" for r in results),
        "chunks": sum(r.chunks for r in results),
        "documents": [{"id": r.doc_id, "chunks": r.chunks, "status": r.status} for r in results],
    }


class SearchRequest(BaseModel):
    """POST /v1/search."""

    model_config = ConfigDict(extra="forbid", strict=True)

    collection: str = COLLECTION
    query: str = Field(
        description="The search text (embedded query-side); not empty or only whitespace.",
        json_schema_extra={"minLength": 1, "pattern": r"\S"},
    )
    top_k: int | None = Field(None, ge=1, description="Hits to return (default from settings).")
    filter: dict[str, Any] | None = Field(
        None,
        description='Metadata filter: {"key": value | [values] | {"gte": n, "lt": n}};'
        ' "doc_id" and "source" address those fields.',
    )
    score_threshold: float | None = Field(
        None,
        allow_inf_nan=False,
        description="Drop hits whose first-stage score (see `mode`) is below this.",
    )
    mode: Literal["dense", "sparse", "hybrid"] | None = Field(
        None,
        description="dense (cosine), sparse (BM25) or hybrid (both, fused in the engine); "
        "default: search.mode for collections with BM25 vectors, else dense.",
    )
    fusion: Literal["rrf", "dbsf", "weighted"] | None = Field(
        None, description="Hybrid fusion (default: search.fusion)."
    )
    group_by_document: bool = Field(
        False, description="Return top_k distinct documents, the best chunk of each."
    )
    rerank: bool | None = Field(
        None,
        description="Rerank candidates with the cross-encoder (default: when rerank.model is "
        "configured); scores are then its relevance scores.",
    )

    @model_validator(mode="after")
    def _unicode(self) -> SearchRequest:
        # Filter values are checked where the filter is parsed (collections/filters.py).
        check_text(self.collection, "collection")
        check_text(self.query, "query")
        return self

    def options(self) -> SearchOptions:
        """The retriever's options."""
        return SearchOptions(self.mode, self.fusion, self.group_by_document, self.rerank)
