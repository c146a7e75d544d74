"""The micro-batcher's background lane: batch jobs yield to interactive requests.

Ordering is made by events, as in test_batcher.py: the gated fake model holds a pass in the
worker thread while the test queues more work.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from rag_appliance.embedding.batcher import MicroBatcher, background_lane
from rag_appliance.errors import ServiceUnavailable
from tests.fakes import FakeEncoder, fake_vector
from tests.unit.embedding.test_batcher import gated, in_thread, release, seqs, started, turns_until


async def test_background_work_is_encoded_in_order_when_idle() -> None:
    enc = FakeEncoder()
    batcher = await started(enc)
    try:
        sequences = seqs(*([5] * 30))
        out = await batcher.embed(sequences, background=True)
        for row, seq in zip(out, sequences, strict=True):
            np.testing.assert_allclose(row, fake_vector(seq, enc.profile.dimension))
        assert batcher.stats.background_items == 0
    finally:
        await batcher.stop()


async def test_interactive_request_overtakes_queued_background_batches() -> None:
    enc = gated()
    batcher = await started(enc, max_tokens=64, max_size=8)
    try:
        # 40 background items of 8 tokens: five full batches of 8.
        background = batcher.submit(seqs(*([8] * 40)), background=True)
        await in_thread(enc)  # the first background batch is in the model
        interactive = batcher.submit(seqs(3, 3, start=500))
        release(enc)
        await asyncio.wait_for(asyncio.gather(background, interactive), 10)
        # One background batch ran before it; the interactive one came next, then the rest.
        assert enc.batches[0] == [8] * 8
        assert enc.batches[1] == [3, 3]
        assert enc.batches[2:] == [[8] * 8] * 4
    finally:
        await batcher.stop()


async def test_only_one_background_batch_is_handed_to_the_thread_at_a_time() -> None:
    enc = gated()
    batcher = await started(enc, max_tokens=64, max_size=8)
    try:
        background = batcher.submit(seqs(*([8] * 24)), background=True)
        await in_thread(enc)
        for _ in range(50):
            await asyncio.sleep(0)
        # Interactive batches are prefetched two deep; background ones never are.
        assert batcher.stats.background_items == 16
        release(enc)
        await asyncio.wait_for(background, 10)
    finally:
        await batcher.stop()


async def test_background_work_neither_counts_against_nor_trips_admission() -> None:
    enc = gated()
    batcher = await started(enc, queue_max_items=4)
    try:
        background = batcher.submit(seqs(*([4] * 100)), background=True)
        await in_thread(enc)
        assert batcher.stats.queued_items == 0
        assert batcher.stats.background_items > 0
        interactive = batcher.submit(seqs(2, 2, 2))  # would be refused if background counted
        assert batcher.stats.queued_items == 3
        release(enc)
        await asyncio.wait_for(asyncio.gather(background, interactive), 10)
        await turns_until(lambda: batcher.stats.queued_items == 0)
        assert batcher.stats.queued_tokens == 0 and batcher.stats.rejected == 0
    finally:
        await batcher.stop()


async def test_the_context_variable_selects_the_background_lane() -> None:
    enc = gated()
    batcher = await started(enc)
    try:
        token = background_lane.set(True)
        try:
            future = batcher.submit(seqs(4, 4))
        finally:
            background_lane.reset(token)
        assert batcher.stats.background_items == 2 or batcher.stats.queued_items == 0
        assert batcher.stats.queued_items == 0
        release(enc)
        await asyncio.wait_for(future, 10)
    finally:
        await batcher.stop()


async def test_stop_resolves_queued_background_work() -> None:
    enc = gated()
    batcher: MicroBatcher = await started(enc, max_tokens=64, max_size=8)
    future = batcher.submit(seqs(*([8] * 40)), background=True)
    await in_thread(enc)
    release(enc)
    await batcher.stop()
    with pytest.raises(ServiceUnavailable):
        await future
    assert batcher.stats.background_items == 0


async def test_background_passes_keep_to_their_own_smaller_budget() -> None:
    enc = FakeEncoder()
    batcher = await started(enc, max_tokens=64, max_size=8)
    batcher.background_max_tokens = 16
    try:
        await batcher.embed(seqs(*([4] * 12)), background=True)
        assert enc.batches == [[4] * 8, [4] * 4]  # no interactive traffic: the full budget
        await batcher.embed(seqs(*([4] * 12)))
        assert enc.batches[2:] == [[4] * 8, [4] * 4]  # interactive passes keep the full budget
        await batcher.embed(seqs(*([4] * 12)), background=True)
        assert enc.batches[4:] == [[4] * 4] * 3  # after interactive traffic: 4 x 4 tokens
    finally:
        await batcher.stop()
