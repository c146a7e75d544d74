"""IndexPipeline writes a long document in bounded groups: never all its chunks at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from rag_appliance.collections.service import COMMITTED, UNCOMMITTED, doc_filter
from rag_appliance.embedding.service import EmbedParams, EmbedResult
from rag_appliance.ingest import pipeline as pipeline_module
from rag_appliance.ingest.chunking import content_hash
from rag_appliance.ingest.pipeline import Document
from rag_appliance.services import Services
from rag_appliance.store.base import Filter, Point
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.conftest import make_services, make_settings
from tests.fakes import FakeEncoder

GROUP = 8
WORDS = " ".join(f"word{i % 97} of line {i}." for i in range(300))


class RecordingStore(QdrantEdgeStore):
    """The real embedded store, recording each write call in order."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls: list[tuple[str, Any]] = []

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        self.calls.append(("upsert", [p.payload["committed"] for p in points]))
        super().upsert(name, points)

    def set_payload(self, name: str, flt: Filter, payload: dict[str, Any]) -> None:
        self.calls.append(("set_payload", payload))
        super().set_payload(name, flt, payload)

    def hold_builds(self, name: str) -> Callable[[], None]:
        self.calls.append(("hold", name))
        release = super().hold_builds(name)

        def recorded() -> None:
            self.calls.append(("release", name))
            release()

        return recorded


@pytest.fixture
async def services(tokenizer: Any, tmp_path: Path) -> AsyncIterator[Services]:
    settings = make_settings(generation={"enabled": False}, ingest={"embed_batch": GROUP})
    store = RecordingStore(tmp_path / "db")
    services = make_services(settings, FakeEncoder(), store, tokenizer=tokenizer)
    await services.start()
    yield services
    await services.stop()


def _count_embeds(services: Services) -> list[int]:
    """The number of texts in each embedding call the pipeline makes, as it makes them."""
    embedding = services.embedding
    sizes: list[int] = []
    original = embedding.embed

    async def counted(params: EmbedParams) -> EmbedResult:
        sizes.append(len(params.inputs))
        return await original(params)

    embedding.embed = counted  # type: ignore[method-assign]
    return sizes


async def test_a_long_document_is_embedded_and_written_in_groups_then_flipped_once(
    services: Services,
) -> None:
    store = services.store
    assert isinstance(store, RecordingStore)
    sizes = _count_embeds(services)
    [result] = await services.require_pipeline().index("kb", [Document(WORDS, id="long")])
    n = result.chunks
    assert n > 10 * GROUP  # the document is many groups long
    # Every embedding call and every upsert holds at most one group of chunks.
    assert max(sizes) <= GROUP and sum(sizes) == n
    upserts = [flags for kind, flags in store.calls if kind == "upsert"]
    assert len(upserts) == -(-n // GROUP) and all(len(flags) <= GROUP for flags in upserts)
    # All written invisible, made visible by one flip after the last write.
    assert all(flag is False for flags in upserts for flag in flags)
    # Index builds held from before the first write until after the flip (edge_hnsw.hold).
    assert store.calls[0] == ("hold", "kb") and store.calls[-1] == ("release", "kb")
    assert store.calls[-2] == ("set_payload", {"committed": True})
    assert [kind for kind, _ in store.calls].count("set_payload") == 1
    assert store.count("kb", Filter(must=(COMMITTED,))) == n


async def test_a_cancel_mid_way_leaves_nothing_of_the_document(services: Services) -> None:
    store = services.store
    assert isinstance(store, RecordingStore)
    pipeline = services.require_pipeline()
    await pipeline.index("kb", [Document("An earlier short version.", id="long")])
    before = len(store.calls)
    task = asyncio.create_task(pipeline.index("kb", [Document(WORDS, id="long")]))
    for _ in range(500):  # until a few groups have been written
        if sum(kind == "upsert" for kind, _ in store.calls[before:]) >= 3:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sum(kind == "upsert" for kind, _ in store.calls[before:]) >= 3
    # Neither the new version's groups nor the hidden old version are left behind.
    assert store.count("kb", doc_filter("long")) == 0
    assert store.count("kb", UNCOMMITTED) == 0
    assert ("set_payload", {"committed": True}) not in store.calls[before:]
    assert [kind for kind, _ in store.calls[before:]].count("release") == 1  # not left held


def test_a_long_text_is_hashed_in_slices_to_the_hash_of_the_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Slices of 7 code points cut between lone surrogates, astral and accented characters.
    monkeypatch.setattr(pipeline_module, "_DIGEST_SLICE", 7)
    text = "ab\ud800c\U0001f600\udfff\ud83d\ude00" * 5 + "\u00e9" * 9
    assert pipeline_module._digest("200:32:None:", text) == content_hash("200:32:None:" + text)
    assert pipeline_module._digest("p", "") == content_hash("p")
