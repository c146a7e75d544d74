"""Collection and document management over the store (listing, counting, deleting)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from rag_appliance.errors import CollectionNotFound
from rag_appliance.ingest.pipeline import COMMITTED, IndexPipeline
from rag_appliance.store.base import CollectionInfo, Filter, Match, VectorStore

FIRST_CHUNKS = Filter(must=(Match("chunk_index", (0,)), COMMITTED))


@dataclass(frozen=True)
class DocumentInfo:
    """A document as listed: its id, chunk count, source, metadata, indexing time."""

    id: str
    chunks: int
    source: str | None
    metadata: dict[str, Any]
    indexed_at: str | None


class Collections:
    """Read and delete collections and their documents."""

    def __init__(self, store: VectorStore, pipeline: IndexPipeline) -> None:
        self.store = store
        self.pipeline = pipeline

    async def all(self) -> list[tuple[CollectionInfo, int]]:
        """Every collection with its document count."""
        infos = await asyncio.to_thread(self.store.list_collections)
        counts = await asyncio.gather(*(self._documents(i.name) for i in infos))
        return list(zip(infos, counts, strict=True))

    async def get(self, name: str) -> tuple[CollectionInfo, int]:
        """One collection with its document count; 404 when missing."""
        info = await asyncio.to_thread(self.store.get_collection, name)
        return info, await self._documents(name)

    async def delete(self, name: str) -> None:
        """Drop a collection and all its points; 404 when missing."""
        await asyncio.to_thread(self.store.get_collection, name)
        await asyncio.to_thread(self.store.delete_collection, name)

    async def documents(
        self, name: str, limit: int, after: str | None
    ) -> tuple[list[DocumentInfo], str | None]:
        """One page of fully indexed documents and the cursor of the next page."""
        records, cursor = await asyncio.to_thread(
            self.store.scroll, name, FIRST_CHUNKS, limit, after
        )
        docs = [
            DocumentInfo(
                id=r.payload["doc_id"],
                chunks=int(r.payload.get("chunk_count", 0)),
                source=r.payload.get("source"),
                metadata=r.payload.get("metadata") or {},
                indexed_at=r.payload.get("indexed_at"),
            )
            for r in records
        ]
        return docs, cursor

    async def delete_document(self, name: str, doc_id: str) -> int:
        """Delete a document's chunks; 404 when the document is not there."""
        removed = await self.pipeline.delete_document(name, doc_id)
        if not removed:
            raise CollectionNotFound(
                f"document '{doc_id}' is not in collection '{name}'",
                param="doc_id",
                code="document_not_found",
            )
        return removed

    async def _documents(self, name: str) -> int:
        return await asyncio.to_thread(self.store.count, name, FIRST_CHUNKS)
