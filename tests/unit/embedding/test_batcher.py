"""The micro-batcher: grouping, ordering, budgets, overload, failures and its observer.

Ordering is made by events, never by sleeping: `submit` queues a request at once, the fake
model's `entered` event says a pass is in the worker thread, and its `gate` holds it there.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


def gated() -> FakeEncoder:
    enc = FakeEncoder()
    enc.gate = threading.Event()
    return enc


def release(enc: FakeEncoder) -> None:
    """Let held and future forward passes run."""
    assert enc.gate is not None
    enc.gate.set()


async def in_thread(enc: FakeEncoder) -> None:
    """Wait until the worker thread is inside a forward pass (held there by the gate)."""
    assert await asyncio.to_thread(enc.entered.wait, 5)


async def turns_until(condition: Callable[[], bool]) -> None:
    """Let the event loop run (turns, not time) until the batcher reaches a state."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the batcher never reached the expected state")


async def test_rows_come_back_in_input_order() -> None:
    enc = FakeEncoder()
    batcher = await started(enc)
    items = seqs(5, 1, 9, 3, 7)
    out = await batcher.embed(items)
    await batcher.stop()
    expected = np.stack([fake_vector(s, 8) for s in items])
    np.testing.assert_allclose(out, expected, rtol=1e-6)


async def test_submit_queues_at_once() -> None:
    enc = gated()
    batcher = await started(enc)
    future = batcher.submit(seqs(2, 3))
    assert batcher.stats.requests == 1 and batcher.stats.queued_items == 2
    release(enc)
    assert (await future).shape == (2, 8)
    await batcher.stop()


async def test_concurrent_requests_share_forward_passes() -> None:
    enc = gated()  # nothing is encoded before every request is queued
    batcher = await started(enc, max_tokens=4096, max_size=256)
    futures = [batcher.submit(seqs(4, 4, start=i * 10)) for i in range(64)]
    assert batcher.stats.queued_items == 128
    release(enc)
    results = await asyncio.gather(*futures)
    await batcher.stop()
    assert batcher.stats.requests == 64
    assert batcher.stats.forward_passes < 64
    assert max(len(b) for b in enc.batches) > 2  # items of different requests in one pass
    for i, out in enumerate(results):
        np.testing.assert_allclose(out[1], fake_vector(seqs(4, 4, start=i * 10)[1], 8), rtol=1e-6)


async def test_batches_respect_token_budget_and_are_length_sorted() -> None:
    enc = gated()
    batcher = await started(enc, max_tokens=40, max_size=6)
    first = batcher.submit(seqs(2))
    await in_thread(enc)  # the first pass is held: the next request is cut on its own
    lengths = [3, 17, 5, 9, 2, 12, 4, 8, 6, 20, 1, 7]
    second = batcher.submit(seqs(*lengths))
    release(enc)
    await asyncio.gather(first, second)
    await batcher.stop()
    assert enc.batches[0] == [2]
    for batch in enc.batches[1:]:
        assert len(batch) <= 6
        assert len(batch) * max(batch) <= 40
        assert batch == sorted(batch)
    assert sorted(x for b in enc.batches[1:] for x in b) == sorted(lengths)


async def test_full_queue_answers_overloaded_then_recovers() -> None:
    enc = gated()
    batcher = await started(enc, queue_max_items=4, retry_after_s=3)
    held = batcher.submit(seqs(2, 2, 2))
    with pytest.raises(Overloaded) as info:
        await batcher.embed(seqs(2, 2))
    assert info.value.status == 429 and info.value.headers["Retry-After"] == "3"
    release(enc)
    await held
    out = await batcher.embed(seqs(2, 2))  # the queue drained: served again
    assert out.shape == (2, 8)
    assert batcher.stats.rejected == 1 and batcher.stats.queued_items == 0
    await batcher.stop()


async def test_work_that_would_wait_too_long_is_refused_by_time() -> None:
    enc = gated()
    batcher = MicroBatcher(
        enc.encode, max_tokens=64, max_size=8, queue_max_items=1000, max_queue_wait_s=2
    )
    await batcher.start()
    held = batcher.submit(seqs(8, 8))
    await in_thread(enc)
    queued = batcher.submit(seqs(8, 8))
    batcher.stats.tokens_per_s = 4.0  # as if measured: 32 queued tokens take 8 s
    with pytest.raises(Overloaded) as info:
        await batcher.embed(seqs(1))
    assert info.value.status == 429 and info.value.headers["Retry-After"] == "6"
    assert "max_queue_wait_s" in info.value.message
    release(enc)
    await held
    await queued
    # drained: the rate is now measured from real passes and the next request is served
    assert batcher.stats.queued_tokens == 0 and batcher.stats.tokens_per_s > 0
    assert (await batcher.embed(seqs(1))).shape == (1, 8)
    assert batcher.stats.rejected == 1
    await batcher.stop()


async def test_an_empty_queue_admits_a_request_larger_than_the_queue() -> None:
    enc = FakeEncoder()
    batcher = await started(enc, queue_max_items=2)
    assert (await batcher.embed(seqs(1, 1, 1, 1))).shape == (4, 8)
    await batcher.stop()


async def test_model_error_resolves_every_item_and_engine_keeps_serving() -> None:
    enc = FakeEncoder(fail_on=666)
    enc.gate = threading.Event()
    batcher = await started(enc, max_tokens=4096, max_size=256)
    bad = batcher.submit([[666, 1], [5, 5]])
    good = batcher.submit(seqs(3, 3))  # queued in the same round: shares the failing batch
    release(enc)
    results = await asyncio.gather(bad, good, return_exceptions=True)
    assert all(isinstance(r, EngineError) for r in results)
    assert "CUDA" not in str(results[0])
    out = await asyncio.wait_for(batcher.embed(seqs(3)), 5)
    assert out.shape == (1, 8)
    assert batcher.stats.failed_batches == 1 and batcher.stats.queued_items == 0
    await batcher.stop()


async def test_cancelled_requests_are_skipped() -> None:
    enc = gated()
    batcher = await started(enc, max_size=1)
    first = batcher.submit(seqs(2))
    await in_thread(enc)
    early = batcher.submit(seqs(30))  # cancelled before the scheduler takes it
    early.cancel()
    late = batcher.submit(seqs(31))  # cancelled once its batch waits for the held thread
    await turns_until(lambda: len(batcher._inflight) == 2)
    late.cancel()
    release(enc)
    await first
    await asyncio.wait_for(batcher.embed(seqs(3)), 5)
    await batcher.stop()
    encoded = [x for b in enc.batches for x in b]
    assert 30 not in encoded and 31 not in encoded
    assert batcher.stats.queued_items == 0


async def test_stop_resolves_queued_requests() -> None:
    enc = gated()
    batcher = await started(enc, max_tokens=64, max_size=1)
    future = batcher.submit(seqs(2, 2, 2, 2))
    await in_thread(enc)
    stopping = asyncio.create_task(batcher.stop())
    # Callbacks run in order: stop() cancels the scheduler before the held pass is released.
    asyncio.get_running_loop().call_soon(release, enc)
    await stopping
    with pytest.raises(ServiceUnavailable):
        await asyncio.wait_for(future, 5)
    assert batcher.stats.queued_items == 0


async def test_not_started_is_unavailable() -> None:
    batcher = MicroBatcher(FakeEncoder().encode, max_tokens=64, max_size=8, queue_max_items=10)
    with pytest.raises(ServiceUnavailable):
        await batcher.embed(seqs(1))


@dataclass
class Observed:
    waits: list[float]
    size: int
    padded_tokens: int
    forward_s: float


class RecordingObserver:
    def __init__(self) -> None:
        self.batches: list[Observed] = []

    def observe_batch(
        self, waits: Sequence[float], size: int, padded_tokens: int, forward_s: float
    ) -> None:
        self.batches.append(Observed(list(waits), size, padded_tokens, forward_s))


async def test_observer_sees_every_pass_with_sizes_tokens_and_times() -> None:
    enc = gated()
    batcher = await started(enc, max_tokens=40, max_size=4)
    observer = RecordingObserver()
    batcher.observer = observer
    first = batcher.submit(seqs(3))
    await in_thread(enc)
    second = batcher.submit(seqs(2, 5, 9, 1, 4))  # waits in the queue while the gate holds
    queued_at = time.perf_counter()
    await asyncio.to_thread(lambda: None)  # a little time in the queue, behind the held pass
    released_at = time.perf_counter()
    release(enc)
    await asyncio.gather(first, second)
    await batcher.stop()
    assert len(observer.batches) == batcher.stats.forward_passes == len(enc.batches)
    for seen, lengths in zip(observer.batches, enc.batches, strict=True):
        assert seen.size == len(lengths) == len(seen.waits)
        assert seen.padded_tokens == len(lengths) * max(lengths)
        assert seen.forward_s >= 0 and all(w >= 0 for w in seen.waits)
    assert sum(b.padded_tokens for b in observer.batches) == batcher.stats.padded_tokens
    # Waits run from admission: the second request's inputs queued at least while held.
    assert min(min(b.waits) for b in observer.batches[1:]) >= released_at - queued_at


async def test_observer_is_not_told_about_failed_passes() -> None:
    enc = FakeEncoder(fail_on=666)
    batcher = await started(enc)
    observer = RecordingObserver()
    batcher.observer = observer
    with pytest.raises(EngineError):
        await batcher.embed([[666, 1]])
    await batcher.embed(seqs(2))
    await batcher.stop()
    assert [b.size for b in observer.batches] == [1]
