"""Builds and owns the engines: the only place where backends are chosen."""

from __future__ import annotations

import logging
import time
from typing import Any

from rag_appliance.embedding.service import EmbeddingService
from rag_appliance.errors import ServiceUnavailable
from rag_appliance.generation.base import Generator
from rag_appliance.ingest.collections import Collections
from rag_appliance.ingest.pipeline import IndexPipeline
from rag_appliance.rag.retriever import Retriever
from rag_appliance.rag.service import ChatService
from rag_appliance.settings import Settings
from rag_appliance.store.base import VectorStore

log = logging.getLogger(__name__)


class Services:
    """The running engines of one app; lives on `app.state.services`."""

    def __init__(
        self,
        settings: Settings,
        embedding: EmbeddingService,
        store: VectorStore | None = None,
        tokenizer: Any = None,
        generator: Generator | None = None,
    ) -> None:
        self.settings = settings
        self.embedding = embedding
        self.store = store
        self.pipeline: IndexPipeline | None = None
        self.retriever: Retriever | None = None
        self.collections: Collections | None = None
        if store is not None and tokenizer is not None:
            self.pipeline = IndexPipeline(embedding, store, tokenizer, settings.ingest)
            self.retriever = Retriever(embedding, store, self.pipeline, settings.search)
            self.collections = Collections(store, self.pipeline)
        self.generator = generator
        self.chat: ChatService | None = None  # built in start(), once the engine runs
        self.created = int(time.time())
        self.running = False

    async def start(self) -> None:
        """Start background workers on the serving event loop."""
        await self.embedding.start()
        if self.generator is not None:
            await self.generator.start()
            # The chat service reads the served name and context length from the started engine.
            self.chat = ChatService(
                self.generator, self.retriever, self.settings.generation, self.settings.rag
            )
        self.running = True

    async def stop(self) -> None:
        """Stop workers (whatever is queued resolves with a 503) and close the store."""
        self.running = False
        if self.generator is not None:
            await self.generator.stop()
        await self.embedding.stop()
        if self.store is not None:
            self.store.close()

    def require_embedding(self) -> EmbeddingService:
        """The embedding service, or a 503 while it is not serving."""
        if not self.running:
            raise ServiceUnavailable("the embedding engine is not running")
        return self.embedding

    def require_chat(self) -> ChatService:
        """The chat service, or a 503 when the generator is disabled or not running."""
        if self.chat is None or not self.running:
            raise ServiceUnavailable(
                "chat is not available: the generator is disabled (generation.enabled=false)"
                if self.generator is None
                else "chat is not available: the generator is not running"
            )
        return self.chat

    def require_pipeline(self) -> IndexPipeline:
        """The indexing pipeline, or a 503 when no store is configured."""
        self.require_embedding()
        if self.pipeline is None:
            raise ServiceUnavailable("no vector store is configured")
        return self.pipeline

    def require_retriever(self) -> Retriever:
        """The retriever, or a 503 when no store is configured."""
        self.require_pipeline()
        assert self.retriever is not None
        return self.retriever

    def require_collections(self) -> Collections:
        """Collection management, or a 503 when no store is configured."""
        self.require_pipeline()
        assert self.collections is not None
        return self.collections


def build_store(settings: Settings) -> VectorStore:
    """The configured vector store (imports its backend lazily)."""
    store = settings.store
    if store.backend == "qdrant_server":
        from rag_appliance.store.qdrant_server import QdrantServerStore

        assert store.url is not None  # enforced by StoreSettings
        return QdrantServerStore.from_url(store.url, store.api_key, timeout=store.timeout_s)
    from rag_appliance.store.qdrant_edge import QdrantEdgeStore

    return QdrantEdgeStore(settings.data_dir / "qdrant", hnsw_threshold=store.hnsw_threshold)


def build_services(settings: Settings) -> Services:
    """Load the configured models and store (blocking: seconds to minutes) and wire them."""
    from rag_appliance.embedding.encoder import Encoder

    started = time.perf_counter()
    encoder = Encoder(settings.embedding)
    embedder_bytes = _embedder_gpu_bytes(encoder.device)
    log.info(
        "embedding model ready in %.1fs: %s (%s, %s, dim %d, max %d tokens)",
        time.perf_counter() - started,
        encoder.info.name,
        encoder.info.device,
        encoder.info.dtype,
        encoder.info.dimension,
        encoder.info.max_length,
    )
    store = build_store(settings)
    log.info("vector store: %s", settings.store.backend)
    generator = None
    if settings.generation.enabled:
        from rag_appliance.generation.vllm_engine import VllmGenerator

        generator = VllmGenerator(
            settings.generation, settings.data_dir, embedder_gpu_bytes=embedder_bytes
        )
    return Services(
        settings,
        EmbeddingService(encoder, settings.embedding),
        store,
        encoder.tokenizer,
        generator,
    )


def _embedder_gpu_bytes(device: str) -> int:
    """GPU memory the embedder reserved, calibration batches included (0 on CPU)."""
    if not device.startswith("cuda"):
        return 0
    import torch

    return int(torch.cuda.max_memory_reserved(torch.device(device)))
