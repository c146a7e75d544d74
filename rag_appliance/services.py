"""Builds and owns the engines: the only place where backends are chosen."""

from __future__ import annotations

import logging
import time

from rag_appliance.embedding.service import EmbeddingService
from rag_appliance.errors import ServiceUnavailable
from rag_appliance.settings import Settings

log = logging.getLogger(__name__)


class Services:
    """The running engines of one app; lives on `app.state.services`."""

    def __init__(self, settings: Settings, embedding: EmbeddingService) -> None:
        self.settings = settings
        self.embedding = embedding
        self.created = int(time.time())
        self.running = False

    async def start(self) -> None:
        """Start background workers on the serving event loop."""
        await self.embedding.start()
        self.running = True

    async def stop(self) -> None:
        """Stop workers; whatever is queued resolves with a 503."""
        self.running = False
        await self.embedding.stop()

    def require_embedding(self) -> EmbeddingService:
        """The embedding service, or a 503 while it is not serving."""
        if not self.running:
            raise ServiceUnavailable("the embedding engine is not running")
        return self.embedding


def build_services(settings: Settings) -> Services:
    """Load the configured models (blocking: seconds to minutes) and wire the services."""
    from rag_appliance.embedding.encoder import Encoder

    started = time.perf_counter()
    encoder = Encoder(settings.embedding)
    log.info(
        "embedding model ready in %.1fs: %s (%s, %s, dim %d, max %d tokens)",
        time.perf_counter() - started,
        encoder.info.name,
        encoder.info.device,
        encoder.info.dtype,
        encoder.info.dimension,
        encoder.info.max_length,
    )
    return Services(settings, EmbeddingService(encoder, settings.embedding))
