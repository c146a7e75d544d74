"""The micro-batcher: grouping, ordering, budgets, overload and failure handling."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from rag_appliance.embedding.batcher import MicroBatcher
from rag_appliance.errors import EngineError, Overloaded, ServiceUnavailable
from tests.fakes import FakeEncoder, fake_vector


def seqs(*lengths: int, start: int = 10) -> list[list[int]]:
    return [[start + i] * n for i, n in enumerate(lengths)]


async def started(encoder: FakeEncoder, **kw: int) -> MicroBatcher:
    options = {"max_tokens": 64, "max_size": 8, "queue_max_items": 1000} | kw
    batcher = MicroBatcher(encoder.encode, **options)
    await batcher.start()
    return batcher


async def test_rows_come_back_in_input_order() -> None:
    enc = FakeEncoder()
    batcher = await started(enc)
    items = seqs(5, 1, 9, 3, 7)
    out = await batcher.embed(items)
    await batcher.stop()
    expected = np.stack([fake_vector(s, 8) for s in items])
    np.testing.assert_allclose(out, expected, rtol=1e-6)


async def test_concurrent_requests_share_forward_passes() -> None:
    enc = FakeEncoder()
    enc.gate = threading.Event()  # hold the first pass so that requests pile up
    batcher = await started(enc, max_tokens=4096, max_size=256)
    tasks = [asyncio.create_task(batcher.embed(seqs(4, 4, start=i * 10))) for i in range(64)]
    await asyncio.sleep(0.05)
    enc.gate.set()
    results = await asyncio.gather(*tasks)
    await batcher.stop()
    assert batcher.stats.requests == 64
    assert batcher.stats.forward_passes < 64
    assert max(len(b) for b in enc.batches) > 2  # items of different requests in one pass
    for i, out in enumerate(results):
        np.testing.assert_allclose(out[1], fake_vector(seqs(4, 4, start=i * 10)[1], 8), rtol=1e-6)


async def test_batches_respect_token_budget_and_are_length_sorted() -> None:
    enc = FakeEncoder()
    enc.gate = threading.Event()
    batcher = await started(enc, max_tokens=40, max_size=6)
    first = asyncio.create_task(batcher.embed(seqs(2)))
    await asyncio.sleep(0.02)
    lengths = [3, 17, 5, 9, 2, 12, 4, 8, 6, 20, 1, 7]
    task = asyncio.create_task(batcher.embed(seqs(*lengths)))
    await asyncio.sleep(0.02)
    enc.gate.set()
    await asyncio.gather(first, task)
    await batcher.stop()
    for batch in enc.batches[1:]:
        assert len(batch) <= 6
        assert len(batch) * max(batch) <= 40
        assert batch == sorted(batch)
    assert sorted(x for b in enc.batches[1:] for x in b) == sorted(lengths)


async def test_full_queue_answers_overloaded_then_recovers() -> None:
    enc = FakeEncoder()
    enc.gate = threading.Event()
    batcher = await started(enc, queue_max_items=4, retry_after_s=3)
    held = asyncio.create_task(batcher.embed(seqs(2, 2, 2)))
    await asyncio.sleep(0.02)
    with pytest.raises(Overloaded) as info:
        await batcher.embed(seqs(2, 2))
    assert info.value.status == 429 and info.value.headers["Retry-After"] == "3"
    enc.gate.set()
    await held
    out = await batcher.embed(seqs(2, 2))  # the queue drained: served again
    assert out.shape == (2, 8)
    assert batcher.stats.rejected == 1 and batcher.stats.queued_items == 0
    await batcher.stop()


async def test_model_error_resolves_every_item_and_engine_keeps_serving() -> None:
    enc = FakeEncoder(fail_on=666)
    enc.gate = threading.Event()
    batcher = await started(enc, max_tokens=4096, max_size=256)
    bad = asyncio.create_task(batcher.embed([[666, 1], [5, 5]]))
    good = asyncio.create_task(batcher.embed(seqs(3, 3)))  # shares the failing batch
    await asyncio.sleep(0.02)
    enc.gate.set()
    results = await asyncio.gather(bad, good, return_exceptions=True)
    assert all(isinstance(r, EngineError) for r in results)
    assert "CUDA" not in str(results[0])
    out = await asyncio.wait_for(batcher.embed(seqs(3)), 5)
    assert out.shape == (1, 8)
    assert batcher.stats.failed_batches == 1 and batcher.stats.queued_items == 0
    await batcher.stop()


async def test_cancelled_requests_are_skipped() -> None:
    enc = FakeEncoder()
    enc.gate = threading.Event()
    batcher = await started(enc)
    first = asyncio.create_task(batcher.embed(seqs(2)))
    await asyncio.sleep(0.02)
    doomed = asyncio.create_task(batcher.embed(seqs(30)))
    await asyncio.sleep(0.02)
    doomed.cancel()
    enc.gate.set()
    await first
    await asyncio.wait_for(batcher.embed(seqs(3)), 5)
    await batcher.stop()
    assert 30 not in [x for b in enc.batches for x in b]
    assert batcher.stats.queued_items == 0


async def test_stop_resolves_queued_requests() -> None:
    enc = FakeEncoder()
    enc.gate = threading.Event()
    batcher = await started(enc, max_tokens=64, max_size=1)
    task = asyncio.create_task(batcher.embed(seqs(2, 2, 2, 2)))
    await asyncio.sleep(0.02)
    stopping = asyncio.create_task(batcher.stop())
    await asyncio.sleep(0.02)
    enc.gate.set()
    await stopping
    with pytest.raises(ServiceUnavailable):
        await asyncio.wait_for(task, 5)


async def test_not_started_is_unavailable() -> None:
    batcher = MicroBatcher(FakeEncoder().encode, max_tokens=64, max_size=8, queue_max_items=10)
    with pytest.raises(ServiceUnavailable):
        await batcher.embed(seqs(1))
