"""Builds and owns the engines: the only place where backends are chosen."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from rag_appliance.chat.service import ChatService
from rag_appliance.collections.service import CollectionService
from rag_appliance.embedding.service import EmbeddingService
from rag_appliance.errors import ServiceUnavailable
from rag_appliance.feedback.log import SearchLog
from rag_appliance.generation.base import Generator
from rag_appliance.ingest.pipeline import IndexPipeline
from rag_appliance.observability import Metrics
from rag_appliance.rerank.service import Reranker
from rag_appliance.retrieval.retriever import Retriever
from rag_appliance.settings import Settings
from rag_appliance.store.base import Bm25Config, VectorStore
from rag_appliance.store.registry import build_store as build_store  # re-exported

if TYPE_CHECKING:
    from rag_appliance.batches.runner import BatchRunner
    from rag_appliance.batches.service import BatchService
    from rag_appliance.embedding.encoder import Encoder
    from rag_appliance.jobs.runner import JobRunner

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
        reranker: Reranker | None = None,
    ) -> None:
        self.settings = settings
        self.embedding = embedding
        # Per app, on its own registry: several apps (tests) may share the process.
        self.metrics = Metrics(lambda: embedding.batcher.stats)
        embedding.batcher.observer = self.metrics
        self.store = store
        self.pipeline: IndexPipeline | None = None
        self.retriever: Retriever | None = None
        self.collections: CollectionService | None = None
        if store is not None and tokenizer is not None:
            # One CollectionService: ingestion and retrieval share its provenance checks.
            bm25s = settings.ingest.bm25
            bm25 = (
                Bm25Config(bm25s.language, bm25s.stemming, bm25s.stopwords)
                if bm25s.enabled
                else None
            )
            self.collections = CollectionService(store, embedding.profile, bm25=bm25)
            self.pipeline = IndexPipeline(embedding, self.collections, tokenizer, settings.ingest)
            self.retriever = Retriever(
                embedding,
                self.collections,
                settings.search,
                self.metrics.observe_retrieval,
                reranker,
            )
        self.generator = generator
        self.reranker = reranker  # None: no rerank.model configured
        self.chat: ChatService | None = None  # built in start(), once the engine runs
        # None unless search_log.enabled; its writer thread starts with start().
        self.search_log: SearchLog | None = SearchLog.from_settings(settings)
        self.jobs: JobRunner | None = None  # the indexing jobs' workers, from start()
        self.batches: BatchService | None = None  # the Batch API (batch.enabled), from start()
        self.batch_runner: BatchRunner | None = None
        self.created = int(time.time())
        self.running = False

    async def start(self) -> None:
        """Start background workers on the serving event loop."""
        await self.embedding.start()
        if self.collections is not None and self.settings.store.backend == "qdrant_edge":
            # This process holds the data directory's lock: every uncommitted chunk is a dead
            # index call's. A shared store's may be another appliance's in flight, so there
            # they are only left out of counts and searches (docs/consistency.md).
            for name, count in (await self.collections.sweep_uncommitted()).items():
                log.warning("collection %r: deleted %d chunks of an unfinished index", name, count)
        if self.search_log is not None:
            self.search_log.start()
        if self.generator is not None:
            await self.generator.start()
            # The chat service reads the served name and context length from the started engine.
            self.chat = ChatService(
                self.generator, self.retriever, self.settings.generation, self.settings.rag
            )
            self.chat.search_log = self.search_log  # RAG answers log their citations
        self.running = True
        if self.pipeline is not None:  # resumes the journal's unfinished jobs
            from rag_appliance.jobs.runner import JobRunner
            from rag_appliance.jobs.store import JobStore

            self.jobs = JobRunner(
                JobStore(self.settings.data_dir / "jobs"),
                self.require_pipeline,
                self.settings.jobs,
                self.settings.server.api_keys,
            )
            await self.jobs.start()

        if self.settings.batch.enabled:  # resumes the batches a previous process left running
            await self._start_batches()

    async def _start_batches(self) -> None:
        from rag_appliance.batches.runner import BatchRunner
        from rag_appliance.batches.service import BatchService

        self.batches = await asyncio.to_thread(
            BatchService,
            self.settings.batch,
            self.settings.data_dir,
            can_index=self.pipeline is not None,
        )
        # Small background passes: an interactive request arriving mid-pass waits for little.
        self.embedding.batcher.background_max_tokens = self.settings.batch.background_batch_tokens
        self.batch_runner = BatchRunner(
            self.batches,
            self.embedding,
            self.pipeline,
            self.settings.ingest.max_documents_per_request,
        )
        await self.batch_runner.start()

    async def stop(self) -> None:
        """Stop workers (whatever is queued resolves with a 503) and close the store."""
        self.running = False
        if self.batch_runner is not None:  # an unrecorded chunk is redone by the next start
            await self.batch_runner.stop()
        if self.jobs is not None:  # a job's batch in flight is rolled back, resumed next start
            await self.jobs.stop()
        if self.pipeline is not None:  # first: a parse in progress is killed, not waited for
            await asyncio.to_thread(self.pipeline.close)
        if self.generator is not None:
            await self.generator.stop()
        await self.embedding.stop()
        if self.reranker is not None:
            await self.reranker.stop()
        if self.store is not None:
            self.store.close()
        if self.search_log is not None:
            self.search_log.stop()  # writes what is still queued

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

    def require_reranker(self) -> Reranker:
        """The reranker, or a 503 when none is configured or it is not running."""
        if self.reranker is None:
            raise ServiceUnavailable(
                "reranking is not available: no reranker is configured (rerank.model)"
            )
        if not self.running:
            raise ServiceUnavailable("the reranker is not running")
        return self.reranker

    def require_pipeline(self) -> IndexPipeline:
        """The indexing pipeline, or a 503 when no store is configured."""
        self.require_embedding()
        if self.pipeline is None:
            raise ServiceUnavailable("no vector store is configured")
        return self.pipeline

    def require_jobs(self) -> JobRunner:
        """The indexing jobs' runner, or a 503 when no store is configured."""
        self.require_pipeline()
        if self.jobs is None:
            raise ServiceUnavailable("the indexing jobs runner is not running")
        return self.jobs

    def require_retriever(self) -> Retriever:
        """The retriever, or a 503 when no store is configured."""
        self.require_pipeline()
        assert self.retriever is not None
        return self.retriever

    def require_collections(self) -> CollectionService:
        """The collection service, or a 503 when no store is configured."""
        self.require_pipeline()
        assert self.collections is not None
        return self.collections


def build_services(settings: Settings) -> Services:
    """Load the configured models and store (blocking: seconds to minutes) and wire them."""
    from rag_appliance import heap
    from rag_appliance.embedding import registry
    from rag_appliance.embedding.encoder import Encoder

    # Before the model runs: glibc's default heap keeps the embedder's activation peak resident
    # (1 MB upload: 1,024 MB above idle by default, 307 MB tuned; docs/security.md).
    heap.tune()
    started = time.perf_counter()
    # A registry name (a fine-tuned model under data_dir/models) is served from its folder.
    embedding_settings = registry.resolve(settings.embedding, settings.data_dir)
    encoder = Encoder(embedding_settings)
    embedding = EmbeddingService(encoder, embedding_settings)
    # Measured before vLLM starts: its share is the budget minus what the embedder holds.
    embedder_bytes = _embedder_gpu_bytes(encoder, *embedding.largest_batch())
    log.info(
        "embedding model ready in %.1fs: %s (%s, %s, dim %d, max %d tokens)",
        time.perf_counter() - started,
        encoder.info.name,
        encoder.info.device,
        encoder.info.dtype,
        encoder.info.dimension,
        encoder.info.max_length,
    )
    reranker = None
    if settings.rerank.model is not None:
        from rag_appliance.rerank.model import load_measured

        model, reranker_bytes = load_measured(settings.rerank)
        reranker = Reranker(model, settings.rerank, model.info.name)
        # vLLM's share is what is left after both models: the reranker's GPU bytes count too.
        embedder_bytes += reranker_bytes
    store = build_store(settings)
    log.info("vector store: %s", settings.store.backend)
    generator = None
    if settings.generation.enabled:
        from rag_appliance.generation.vllm_engine import VllmGenerator

        generator = VllmGenerator(
            settings.generation, settings.data_dir, embedder_gpu_bytes=embedder_bytes
        )
    return Services(settings, embedding, store, encoder.tokenizer, generator, reranker)


def _embedder_gpu_bytes(encoder: Encoder, count: int, length: int) -> int:
    """GPU memory the embedder holds after one pass of its largest batch (0 on CPU)."""
    if not encoder.device.startswith("cuda"):
        return 0
    import torch

    device = torch.device(encoder.device)
    # Drop what calibration left cached, so that the peak is the weights plus one full pass:
    # the memory the embedder keeps reserved while serving.
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    encoder.warm_up(count, length)
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_reserved(device))
