"""The UI handlers' rig: the fake embedder, a real embedded store, a gated fake generator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rag_appliance.generation.base import Delta, SamplingParams
from rag_appliance.ingest.chunking import ChunkingParams
from rag_appliance.ingest.pipeline import Document
from rag_appliance.services import Services
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.conftest import make_services, make_settings
from tests.fakes import FakeEncoder, FakeGenerator

REPLY = "Goats graze on the windy island [1]. They like salt."
DOCS = [
    Document("Goats graze on the windy island all summer long.", id="goats.txt", source="goats"),
    Document("Llamas hum softly when they are nervous.", id="llamas.txt"),
]
# A document of several overlapping chunks (indexed with small chunks).
LONG_ID = "long.md"
LONG = " ".join(f"Sentence number {n} of the long document." for n in range(12))


@dataclass
class Request:
    """What handlers read from gr.Request."""

    session_hash: str = "session-a"
    username: str | None = None


class GatedGenerator(FakeGenerator):
    """FakeGenerator whose stream waits at `gate` after `open_words` words (None: never)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.open_words: int | None = None
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()  # a stream is at the gate
        self.closed = 0  # streams closed or cancelled before their end

    def stream(self, prompt: list[int], params: SamplingParams, request_id: str) -> Any:
        return self._gated(super().stream(prompt, params, request_id))

    async def _gated(self, deltas: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
        done = False
        try:
            n = 0
            async for delta in deltas:
                if self.open_words is not None and n == self.open_words:
                    self.waiting.set()
                    await self.gate.wait()
                n += 1
                yield delta
            done = True
        finally:
            if not done:
                self.closed += 1


@dataclass
class Rig:
    """Started services over a store with collection "kb" (goats, llamas, long) and "empty"."""

    services: Services
    generator: GatedGenerator
    encoder: FakeEncoder


@pytest.fixture
async def rig(tmp_path: Path, tokenizer: Any) -> AsyncIterator[Rig]:
    settings = make_settings(
        generation={"max_tokens": 32},
        rag={"top_k": 3, "default_collection": "kb"},
    )
    generator = GatedGenerator(reply=REPLY, max_model_len=1024)
    encoder = FakeEncoder()
    store = QdrantEdgeStore(tmp_path / "db")
    services = make_services(settings, encoder, store, generator, tokenizer=tokenizer)
    await services.start()
    try:
        pipeline = services.require_pipeline()
        await pipeline.index("kb", DOCS)
        await pipeline.index("kb", [Document(LONG, id=LONG_ID)], ChunkingParams(16, 4))
        await services.require_collections().ensure("empty")
        yield Rig(services, generator, encoder)
    finally:
        await services.stop()
