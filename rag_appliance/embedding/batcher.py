"""Dynamic micro-batcher: many requests -> length-sorted, token-budgeted forward passes.

Interactive requests share passes and face admission (429); batch jobs use the background lane,
which only fills a pass when no interactive item is queued (docs/batch.md).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from rag_appliance.errors import EngineError, Overloaded, ServiceUnavailable

log = logging.getLogger(__name__)

EncodeFn = Callable[[Sequence[Sequence[int]]], np.ndarray]

# Batches handed to the worker thread ahead of time, so it never waits for the event loop.
_PREFETCH = 2
# One round takes at most this many batch budgets from the queue before it is sorted and cut:
# long enough to sort well, short enough that nothing waits more than a round.
_ROUND_BUDGETS = 8

# Background passes stay small for this long after the last interactive request; with none
# that recent (nobody waiting on the engine), they use the full budget.
_RECENT_INTERACTIVE_S = 5.0

# Work submitted while this is set (batch jobs) takes the background lane: it runs only when no
# interactive work is queued, one batch at a time, and never counts against admission.
background_lane: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "rag_background_lane", default=False
)


@dataclass
class BatcherStats:
    """Counters exposed by /ready and /metrics."""

    requests: int = 0
    items: int = 0
    forward_passes: int = 0
    padded_tokens: int = 0
    real_tokens: int = 0
    rejected: int = 0
    failed_batches: int = 0
    queued_items: int = 0
    queued_tokens: int = 0
    # Real tokens encoded per second of forward pass, a moving average (0: not measured yet).
    tokens_per_s: float = 0.0
    # The background lane's queue (batch jobs); not part of queued_* nor of admission.
    background_items: int = 0

    def expected_wait(self) -> float:
        """Seconds the queued work takes at the measured rate (0 before the first pass)."""
        return self.queued_tokens / self.tokens_per_s if self.tokens_per_s > 0 else 0.0


class BatchObserver(Protocol):
    """Told about every successful forward pass (e.g. the app's Prometheus histograms)."""

    def observe_batch(
        self, waits: Sequence[float], size: int, padded_tokens: int, forward_s: float
    ) -> None: ...


@dataclass
class _Request:
    size: int
    future: asyncio.Future[np.ndarray]
    admitted: float = 0.0  # perf_counter() when queued
    out: np.ndarray | None = None
    remaining: int = 0
    background: bool = False

    def alive(self) -> bool:
        return not self.future.done()


@dataclass
class _Item:
    request: _Request
    index: int
    ids: Sequence[int]
    length: int = field(init=False)

    def __post_init__(self) -> None:
        self.length = len(self.ids)


class MicroBatcher:
    """Queues token-id sequences from concurrent requests and encodes them in shared batches."""

    def __init__(
        self,
        encode: EncodeFn,
        *,
        max_tokens: int,
        max_size: int,
        queue_max_items: int,
        retry_after_s: int = 1,
        max_queue_wait_s: float | None = None,
    ) -> None:
        self._encode = encode
        self._max_tokens = max_tokens
        self._max_size = max_size
        self._queue_max = queue_max_items
        self._retry_after = retry_after_s
        self._max_wait = max_queue_wait_s
        self._pending: collections.deque[_Item] = collections.deque()
        self._background: collections.deque[_Item] = collections.deque()
        self._bg_inflight = 0  # background batches handed to the thread (at most one)
        self._bg_tasks: set[asyncio.Task[None]] = set()
        self._round: list[list[_Item]] = []  # cut into batches, not yet handed to the thread
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(_PREFETCH)
        self._inflight: set[asyncio.Task[None]] = set()
        # One thread owns the model: torch parallelises inside each forward pass.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        self._task: asyncio.Task[None] | None = None
        self.stats = BatcherStats()
        # Set by the owner (Services) to collect histograms; None costs nothing per batch.
        self.observer: BatchObserver | None = None
        # Padded-token budget of a background pass (set by the owner from batch settings):
        # interactive work that arrives during one waits for at most this much.
        self.background_max_tokens = max_tokens
        self._last_interactive = -math.inf  # time.monotonic() of the last interactive submit

    async def start(self) -> None:
        """Start the scheduling task on the running loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        """Stop scheduling and resolve everything still queued with a 503."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await asyncio.gather(*self._inflight, return_exceptions=True)
        self._fail_pending(ServiceUnavailable("the embedding engine is shutting down"))
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def embed(
        self, sequences: Sequence[Sequence[int]], *, background: bool | None = None
    ) -> np.ndarray:
        """Encode finalized token-id sequences; rows come back in input order."""
        return await self.submit(sequences, background=background)

    def submit(
        self, sequences: Sequence[Sequence[int]], *, background: bool | None = None
    ) -> asyncio.Future[np.ndarray]:
        """Queue sequences now (on the loop's thread); the future resolves to their rows.

        `background` (default: the `background_lane` context) queues them behind every
        interactive request, without admission checks: the caller bounds what it submits.
        """
        if self._task is None:
            raise ServiceUnavailable("the embedding engine is not running")
        n = len(sequences)
        if background_lane.get() if background is None else background:
            return self._submit_background(sequences)
        self._last_interactive = time.monotonic()
        # An empty queue admits any request, so a big one is never refused forever.
        if self.stats.queued_items and self.stats.queued_items + n > self._queue_max:
            self.stats.rejected += 1
            raise Overloaded(
                "the embedding engine is overloaded; retry after a moment",
                headers={"Retry-After": str(self._retry_after)},
            )
        wait = self.stats.expected_wait()
        if self._max_wait is not None and self.stats.queued_items and wait > self._max_wait:
            self.stats.rejected += 1
            retry = max(1, math.ceil(wait - self._max_wait))
            raise Overloaded(
                f"the embedding engine has {wait:.0f}s of queued work (more than "
                f"embedding.max_queue_wait_s = {self._max_wait:g}s); retry after {retry}s",
                headers={"Retry-After": str(retry)},
            )
        loop = asyncio.get_running_loop()
        request = _Request(
            size=n, future=loop.create_future(), admitted=time.perf_counter(), remaining=n
        )
        self._pending.extend(_Item(request, i, seq) for i, seq in enumerate(sequences))
        self.stats.requests += 1
        self.stats.queued_items += n
        self.stats.queued_tokens += sum(len(seq) for seq in sequences)
        self._wakeup.set()
        return request.future

    def _submit_background(self, sequences: Sequence[Sequence[int]]) -> asyncio.Future[np.ndarray]:
        loop = asyncio.get_running_loop()
        n = len(sequences)
        request = _Request(
            size=n,
            future=loop.create_future(),
            admitted=time.perf_counter(),
            remaining=n,
            background=True,
        )
        self._background.extend(_Item(request, i, seq) for i, seq in enumerate(sequences))
        self.stats.background_items += n
        self._wakeup.set()
        return request.future

    def _background_ready(self) -> bool:
        return bool(self._background) and self._bg_inflight == 0 and not self._pending

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending or self._round or self._background_ready():
                try:
                    if not self._round:
                        if self._pending:
                            self._round = self._cut(self._take_round())
                        else:
                            self._round = self._take_background()
                        continue
                    await self._slots.acquire()
                    batch = self._round.pop(0)
                    task = asyncio.create_task(self._run_batch(batch))
                    self._inflight.add(task)
                    if batch[0].request.background:
                        self._bg_inflight += 1
                        self._bg_tasks.add(task)
                    task.add_done_callback(self._batch_done)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bug here must not strand queued requests
                    log.exception("micro-batcher scheduling failed")
                    self._fail_pending(EngineError("the embedding engine failed"))

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slots.release()
        if task in self._bg_tasks:
            self._bg_tasks.discard(task)
            self._bg_inflight -= 1
            if self._background:
                self._wakeup.set()  # the next background batch, if nothing interactive waits

    def _take_background(self) -> list[list[_Item]]:
        """One background batch: the window is sorted and cut, the rest goes back in front."""
        limit = self._max_tokens
        if time.monotonic() - self._last_interactive < _RECENT_INTERACTIVE_S:
            limit = max(2, min(self.background_max_tokens, self._max_tokens))
        budget = limit * _ROUND_BUDGETS
        window: list[_Item] = []
        used = 0
        while self._background and (not window or used + self._background[0].length <= budget):
            item = self._background.popleft()
            self.stats.background_items -= 1
            if item.request.alive():
                window.append(item)
                used += item.length
        if not window:
            return []
        first, *rest = self._cut(window, limit)
        for item in reversed([it for batch in rest for it in batch]):
            self._background.appendleft(item)
            self.stats.background_items += 1
        # Only one background batch at a time: interactive work waits for one batch at most.
        return [first]

    def _take_round(self) -> list[_Item]:
        budget = self._max_tokens * _ROUND_BUDGETS
        taken: list[_Item] = []
        used = 0
        while self._pending and (not taken or used + self._pending[0].length <= budget):
            item = self._pending.popleft()
            if not item.request.alive():
                self.stats.queued_items -= 1
                self.stats.queued_tokens -= item.length
                continue
            taken.append(item)
            used += item.length
        return taken

    def _cut(self, items: list[_Item], max_tokens: int | None = None) -> list[list[_Item]]:
        """Length-sorted batches whose padded size (count x longest) fits the token budget."""
        budget = max_tokens or self._max_tokens
        items.sort(key=lambda it: it.length)
        batches: list[list[_Item]] = []
        batch: list[_Item] = []
        for item in items:
            # Sorted ascending, so the newest item is the longest of its batch.
            if batch and (len(batch) >= self._max_size or (len(batch) + 1) * item.length > budget):
                batches.append(batch)
                batch = []
            batch.append(item)
        if batch:
            batches.append(batch)
        return batches

    def _encode_alive(
        self, batch: list[_Item]
    ) -> tuple[list[_Item], np.ndarray | None, float, float]:
        # Runs on the worker thread, right before the pass: requests cancelled while queued
        # behind other batches cost nothing.
        alive = [it for it in batch if it.request.alive()]
        if not alive:
            return alive, None, 0.0, 0.0
        started = time.perf_counter()
        vectors = self._encode([it.ids for it in alive])
        return alive, vectors, started, time.perf_counter() - started

    async def _run_batch(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        try:
            alive, vectors, started, forward_s = await loop.run_in_executor(
                self._executor, self._encode_alive, batch
            )
        except Exception:
            log.exception("embedding forward pass failed for a batch of %d", len(batch))
            self.stats.failed_batches += 1
            self._dequeued(batch)
            error = EngineError("the embedding model failed on this request")
            for it in batch:
                if it.request.alive():
                    it.request.future.set_exception(error)
            return
        self._dequeued(batch)
        if vectors is None:
            return
        real = sum(it.length for it in alive)
        if forward_s > 0:
            rate = real / forward_s
            old = self.stats.tokens_per_s
            self.stats.tokens_per_s = rate if old == 0 else 0.7 * old + 0.3 * rate
        padded = len(alive) * alive[-1].length
        self.stats.forward_passes += 1
        self.stats.items += len(alive)
        self.stats.real_tokens += real
        self.stats.padded_tokens += padded
        for it, row in zip(alive, vectors, strict=True):
            request = it.request
            if not request.alive():
                continue
            if request.out is None:
                request.out = np.empty((request.size, vectors.shape[1]), dtype=np.float32)
            request.out[it.index] = row
            request.remaining -= 1
            if request.remaining == 0:
                request.future.set_result(request.out)
        # After the rows are handed out: observing must never hold up or strand a request.
        if self.observer is not None:
            waits = [started - it.request.admitted for it in alive]
            self.observer.observe_batch(waits, len(alive), padded, forward_s)

    def _dequeued(self, items: Sequence[_Item]) -> None:
        # Background items were never counted in the admission figures.
        counted = [it for it in items if not it.request.background]
        self.stats.queued_items -= len(counted)
        self.stats.queued_tokens -= sum(it.length for it in counted)

    def _fail_pending(self, error: Exception) -> None:
        items = [*self._pending, *(it for batch in self._round for it in batch)]
        items.extend(self._background)
        self.stats.background_items -= len(self._background)
        self._pending.clear()
        self._round.clear()
        self._background.clear()
        self._dequeued(items)
        for item in items:
            if item.request.alive():
                item.request.future.set_exception(error)
