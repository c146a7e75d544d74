"""parse -> chunk -> embed -> upsert; idempotent by (doc id, content hash), crash-safe.

A document's chunks are written with `committed: false` (invisible to search) and flipped to
`committed: true` in one store operation once all of them, and the deletion of stale chunks,
have landed. Re-indexing first hides the old version. A process killed anywhere in between
leaves the document absent from search and not "unchanged", so re-running converges.

A store with `replace_documents(name, doc_ids, points)` (the pgvector adapter) swaps each
document in one transaction instead: old chunks deleted and new ones written committed, so
searches never see it half old, half new or absent, and a crash keeps the old version.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from rag_appliance.collections.service import COMMITTED, CollectionService, doc_filter
from rag_appliance.embedding.service import EmbeddingService, EmbedParams
from rag_appliance.errors import InvalidRequest, Overloaded, PayloadTooLarge
from rag_appliance.ingest.chunking import (
    Chunk,
    ChunkingParams,
    TooManyChunks,
    chunk_text,
    doc_id_from_content,
    stable_chunk_id,
)
from rag_appliance.ingest.limits import too_much_text
from rag_appliance.ingest.rollback import rolling_back, settled
from rag_appliance.ingest.sandbox import ParseSandbox
from rag_appliance.settings import IngestSettings
from rag_appliance.store.base import Filter, Match, Point, Range

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Document:
    """One document to index, as plain values."""

    text: str
    id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str | None = None


@dataclass(frozen=True)
class DocResult:
    """What happened to one document."""

    doc_id: str
    chunks: int
    status: str  # "indexed" | "unchanged"


@dataclass
class _Pending:
    doc: Document
    doc_id: str
    digest: str
    chunks: list[Chunk]
    existed: bool = False


class IndexPipeline:
    """Indexes documents into a collection through the shared embedding engine."""

    def __init__(
        self,
        embedding: EmbeddingService,
        collections: CollectionService,
        tokenizer: Any,
        settings: IngestSettings,
    ) -> None:
        self.embedding = embedding
        self.collections = collections
        self.store = collections.store
        self.tokenizer = tokenizer
        self.settings = settings
        # Files are parsed in worker processes (started on first use), never in the server.
        self.sandbox = ParseSandbox.from_settings(settings)
        profile = embedding.profile
        prefix_tokens = len(embedding.encoder.tokenize([profile.document_prefix])[0])
        # The chunk plus the model's special tokens and document prefix must fit the model.
        self.max_chunk_tokens = (
            embedding.max_tokens_per_input - embedding.encoder.n_special() - prefix_tokens
        )

    def chunking(self, max_tokens: int | None = None, overlap: int | None = None) -> ChunkingParams:
        """Chunking parameters from a request, defaulted by settings and capped by the model."""
        size = min(max_tokens or self.settings.chunk_max_tokens, self.max_chunk_tokens)
        lap = self.settings.chunk_overlap_tokens if overlap is None else overlap
        try:
            return ChunkingParams(max_tokens=size, overlap_tokens=min(lap, size - 1))
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="chunking") from None

    # The collection's shared lock for the whole call: a delete waits for it (consistency.md).
    @CollectionService.holding
    async def index(
        self,
        collection: str,
        documents: Sequence[Document],
        params: ChunkingParams | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[DocResult]:
        """Index documents (creating the collection if needed); results in input order."""
        params = params or self.chunking()
        await self.collections.ensure(collection)
        pending = await asyncio.to_thread(self._prepare, documents, params)
        results: dict[str, DocResult] = {}
        todo: list[_Pending] = []
        for item in pending:
            if not item.chunks:
                raise InvalidRequest(f"document '{item.doc_id}' has no text", param="documents")
            unchanged = await asyncio.to_thread(self._is_unchanged, collection, item)
            if unchanged:
                results[item.doc_id] = DocResult(item.doc_id, len(item.chunks), "unchanged")
                if progress:
                    progress(len(item.chunks))
            else:
                todo.append(item)
        if todo:
            await self._write(collection, todo, progress)
            for item in todo:
                results[item.doc_id] = DocResult(item.doc_id, len(item.chunks), "indexed")
        return [results[item.doc_id] for item in pending]

    def close(self) -> None:
        """Stop the parse workers."""
        self.sandbox.close()

    def _prepare(self, documents: Sequence[Document], params: ChunkingParams) -> list[_Pending]:
        seen: dict[str, _Pending] = {}
        most_chars = self.settings.max_document_chars
        most_chunks = self.settings.max_chunks_per_document
        for doc in documents:
            doc_id = doc.id or doc_id_from_content(doc.text)
            if len(doc.text) > most_chars:
                raise _for_document(too_much_text(most_chars), doc_id)
            # What the chunks are indexed with is part of what was indexed: chunking parameters
            # and the contextual title; changing either re-indexes.
            context = self._context(doc)
            digest = _digest(f"{params.max_tokens}:{params.overlap_tokens}:{context!r}:", doc.text)
            try:
                chunks = chunk_text(doc.text, self.tokenizer, params, most_chunks)
            except TooManyChunks:
                error = PayloadTooLarge(
                    f"the document makes more than {most_chunks:,} chunks "
                    "(ingest.max_chunks_per_document)",
                    code="too_many_chunks",
                )
                raise _for_document(error, doc_id) from None
            seen[doc_id] = _Pending(doc, doc_id, digest, chunks)  # last one of an id wins
        return list(seen.values())

    def _is_unchanged(self, collection: str, item: _Pending) -> bool:
        total = self.store.count(collection, doc_filter(item.doc_id))
        item.existed = total > 0
        if total != len(item.chunks):
            return False
        same = Filter(
            must=(*doc_filter(item.doc_id).must, Match("content_hash", (item.digest,)), COMMITTED)
        )
        return self.store.count(collection, same) == total

    async def _write(
        self, collection: str, todo: list[_Pending], progress: Callable[[int], None] | None
    ) -> None:
        replace = getattr(self.store, "replace_documents", None)
        if replace is not None:  # the store swaps a document in one transaction: no hiding
            await self._replace(collection, todo, progress, replace)
            return
        # Cancelled (the client left) or failed: this call's uncommitted chunks are deleted.
        async with rolling_back(self.store, collection, [item.doc_id for item in todo]):
            # The store's index builds wait for the end of the write (edge_hnsw.hold).
            hold = getattr(self.store, "hold_builds", None)
            release = hold(collection) if hold is not None else None
            try:
                await self._write_flagged(collection, todo, progress)
            finally:
                if release is not None:
                    await settled(release)

    async def _write_flagged(
        self, collection: str, todo: list[_Pending], progress: Callable[[int], None] | None
    ) -> None:
        # Each store call lands before a cancellation goes on, so the rollback sees every write.
        existing = [item.doc_id for item in todo if item.existed]
        if existing:  # hide old versions first: a crash from here on leaves them absent
            await settled(
                self.store.set_payload, collection, doc_filter(*existing), {"committed": False}
            )
        now = dt.datetime.now(dt.UTC).isoformat()
        batch = self.settings.embed_batch
        flat = [(item, chunk) for item in todo for chunk in item.chunks]
        for start in range(0, len(flat), batch):
            part = flat[start : start + batch]
            texts = [contextual_text(self._context(item.doc), chunk.text) for item, chunk in part]
            vectors = await self._embed(texts)
            points = [
                Point(
                    id=stable_chunk_id(item.doc_id, chunk.index),
                    vector=vector,
                    payload=_payload(item, chunk, now),
                    text_for_sparse=text,
                )
                for (item, chunk), vector, text in zip(part, vectors, texts, strict=True)
            ]
            await settled(self.store.upsert, collection, points)
            if progress:
                progress(len(part))
        for item in todo:
            if item.existed:  # chunks past the new end belong to the old version
                stale = Filter(
                    must=(*doc_filter(item.doc_id).must, Range("chunk_index", gte=len(item.chunks)))
                )
                await settled(self.store.delete, collection, stale)
        ids = tuple(item.doc_id for item in todo)
        await settled(self.store.set_payload, collection, doc_filter(*ids), {"committed": True})

    async def _replace(
        self,
        collection: str,
        todo: list[_Pending],
        progress: Callable[[int], None] | None,
        replace: Callable[[str, list[str], list[Point]], None],
    ) -> None:
        """Embed the documents' chunks, and write each document as soon as all its chunks are
        embedded with the store's `replace_documents` (old chunks deleted, new ones written
        committed, in one transaction): searches see the old version until then, never a mix
        or none, and a crash leaves the old version whole."""
        now = dt.datetime.now(dt.UTC).isoformat()
        batch = self.settings.embed_batch
        flat = [(item, chunk) for item in todo for chunk in item.chunks]
        ends: list[int] = []  # the end of each document's chunks in `flat`
        for item in todo:
            ends.append((ends[-1] if ends else 0) + len(item.chunks))
        ready: list[Point] = []  # embedded chunks of the documents not written yet
        written = 0  # documents written, in `todo` order
        for start in range(0, len(flat), batch):
            part = flat[start : start + batch]
            texts = [contextual_text(self._context(item.doc), chunk.text) for item, chunk in part]
            vectors = await self._embed(texts)
            ready += [
                Point(
                    id=stable_chunk_id(item.doc_id, chunk.index),
                    vector=vector,
                    payload={**_payload(item, chunk, now), "committed": True},
                    text_for_sparse=text,
                )
                for (item, chunk), vector, text in zip(part, vectors, texts, strict=True)
            ]
            complete = written
            while complete < len(todo) and ends[complete] <= start + len(part):
                complete += 1
            if complete > written:  # these documents are whole: one transaction for them
                count = ends[complete - 1] - (ends[written - 1] if written else 0)
                doc_ids = [item.doc_id for item in todo[written:complete]]
                await asyncio.to_thread(replace, collection, doc_ids, ready[:count])
                ready, written = ready[count:], complete
            if progress:
                progress(len(part))

    def _context(self, doc: Document) -> str | None:
        return chunk_context(doc.metadata, self.settings.contextual_chunks)

    async def _embed(self, texts: list[str]) -> np.ndarray:
        # Bulk indexing shares the engine with live traffic: wait for room instead of failing.
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Overloaded),
            wait=wait_exponential(multiplier=0.05, max=2),
            stop=stop_after_delay(300),
            reraise=True,
        ):
            with attempt:
                result = await self.embedding.embed(
                    EmbedParams(inputs=texts, input_type="document", truncate=True)
                )
        return result.vectors


# Characters encoded at a time when hashing a document: a long text is not copied whole.
_DIGEST_SLICE = 1 << 20


def _digest(prefix: str, text: str) -> str:
    """content_hash(prefix + text) without the concatenation or the whole text's UTF-8 copy."""
    digest = hashlib.sha256(prefix.encode("utf-8", "surrogatepass"))
    # Slicing by code points never splits a character (lone surrogates encode one by one).
    for start in range(0, len(text), _DIGEST_SLICE):
        digest.update(text[start : start + _DIGEST_SLICE].encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _for_document(error: PayloadTooLarge, doc_id: str) -> PayloadTooLarge:
    """The error naming the document it is about."""
    return PayloadTooLarge(
        f"document '{doc_id}': {error.message}", param="documents", code=error.code
    )


def _payload(item: _Pending, chunk: Chunk, now: str) -> dict[str, Any]:
    return {
        "doc_id": item.doc_id,
        "chunk_index": chunk.index,
        "chunk_count": len(item.chunks),
        "text": chunk.text,
        "start_char": chunk.start_char,
        "end_char": chunk.end_char,
        "metadata": item.doc.metadata,
        "source": item.doc.source,
        "content_hash": item.digest,
        "indexed_at": now,
        "committed": False,
    }


def chunk_context(metadata: dict[str, Any], enabled: bool) -> str | None:
    """The title a document's chunks are indexed with (None: off, or the document has none)."""
    title = metadata.get("title") if enabled else None
    return (title.strip() or None) if isinstance(title, str) else None


def contextual_text(context: str | None, text: str) -> str:
    """The text a chunk is embedded and BM25-indexed with: its document's title, then itself."""
    return text if not context else f"{context}\n\n{text}"
