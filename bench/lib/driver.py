"""The closed-loop load driver: C workers, each sending its next request once the last is answered.

A sender embeds one batch of texts and returns a `Reply`; the driver only counts. The same loop
runs against the engine in process and against a server over HTTP (`lib.load`), with either a
fixed number of requests (`Plan.fixed`) or a time budget within [min, max] requests.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Reply:
    """One answered batch: its vectors, the tokens the server reported and the body size."""

    vectors: np.ndarray
    tokens: int
    nbytes: int


@dataclass(frozen=True)
class Run:
    """One closed-loop measurement of one system on one bucket."""

    texts: int
    requests: int
    seconds: float
    texts_per_s: float
    latency_p50_s: float
    latency_p95_s: float
    tokens_per_text: float
    bytes_per_response: float


@dataclass(frozen=True)
class Plan:
    """How long a closed loop runs: until `seconds` pass, within [min, max] requests."""

    seconds: float
    min_requests: int
    max_requests: int

    @classmethod
    def fixed(cls, requests: int) -> Plan:
        """Exactly `requests` requests, however long they take."""
        return cls(0.0, requests, requests)


# One measured request: start and end (time.monotonic, comparable across processes on Linux),
# texts, tokens the server reported, response bytes.
Sample = tuple[float, float, int, int, int]
Sender = Callable[[list[str]], Awaitable[Reply]]


def log(message: str) -> None:
    """Progress on stderr, so stdout keeps only the report."""
    print(message, file=sys.stderr, flush=True)


def batch_at(texts: Sequence[str], i: int, size: int) -> list[str]:
    """Request i's texts: texts[i*size : (i+1)*size], wrapping around the bucket."""
    n = len(texts)
    return [texts[(i * size + j) % n] for j in range(size)]


def make_batches(texts: Sequence[str], requests: int, size: int) -> list[list[str]]:
    """The first `requests` requests' texts (`batch_at` for i = 0, 1, ...)."""
    return [batch_at(texts, i, size) for i in range(requests)]


def warm_batches(texts: Sequence[str], size: int, clients: int) -> list[list[str]]:
    """One batch per client from the bucket's far end, away from the first measured ones."""
    return [batch_at(texts, -1 - k, size) for k in range(clients)]


async def warm_up(send: Sender, batches: Sequence[list[str]]) -> None:
    """Send every warm-up batch at once (one per client opens one connection each)."""
    await asyncio.gather(*(send(b) for b in batches))


def check_unit(vectors: np.ndarray, what: str) -> None:
    """Fail loudly unless every row is a finite unit vector."""
    norms = np.linalg.norm(vectors, axis=1)
    if not np.all(np.isfinite(norms)) or np.max(np.abs(norms - 1.0)) > 1e-3:
        raise RuntimeError(
            f"{what}: vectors are not unit length (norms {norms.min()}..{norms.max()})"
        )


def checked(send: Sender, dim: int, what: str) -> Sender:
    """Wrap a sender so that every reply must hold one unit vector of `dim` per text."""

    async def send_checked(texts: list[str]) -> Reply:
        reply = await send(texts)
        if reply.vectors.shape != (len(texts), dim):
            raise RuntimeError(
                f"{what}: expected {len(texts)} x {dim} vectors, got {reply.vectors.shape}"
            )
        check_unit(reply.vectors, what)
        return reply

    return send_checked


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest row-wise cosine similarity between two stacks of vectors."""
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    dots = np.sum(a64 * b64, axis=1)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return round(float(np.min(dots / norms)), 6)


async def closed_loop(
    send: Sender,
    batch_for: Callable[[int], list[str]],
    clients: int,
    plan: Plan,
    on_reply: Callable[[int, Reply], None] | None = None,
) -> tuple[float, list[Sample]]:
    """`clients` workers send requests 0, 1, 2, ... (`batch_for(i)`) back to back, per the plan.

    Returns when the plan is done: the loop's start and one sample per answered request.
    `on_reply(i, reply)` sees every reply (to keep vectors, say).
    """
    samples: list[Sample] = []
    issued = 0
    started = time.monotonic()
    deadline = started + plan.seconds

    async def worker() -> None:
        nonlocal issued
        while issued < plan.max_requests and (
            issued < plan.min_requests or time.monotonic() < deadline
        ):
            i = issued
            texts = batch_for(i)
            issued += 1
            t = time.monotonic()
            reply = await send(texts)
            samples.append((t, time.monotonic(), len(texts), reply.tokens, reply.nbytes))
            if on_reply is not None:
                on_reply(i, reply)

    await asyncio.gather(*(worker() for _ in range(clients)))
    return started, samples


async def timed_loop(
    send: Sender,
    texts: Sequence[str],
    batch: int,
    clients: int,
    plan: Plan,
    offset: int = 0,
    stride: int = 1,
) -> tuple[float, list[Sample]]:
    """The closed loop over one bucket: request i gets `batch_at(texts, offset + i*stride)`."""
    return await closed_loop(
        send, lambda i: batch_at(texts, offset + i * stride, batch), clients, plan
    )


def summarize(started: float, samples: Sequence[Sample], digits: int = 1) -> Run:
    """Throughput (rounded to `digits`) and latency of a closed loop that began at `started`."""
    if not samples:
        raise RuntimeError("no request completed")
    seconds = max(s[1] for s in samples) - started
    texts = sum(s[2] for s in samples)
    latencies = [s[1] - s[0] for s in samples]
    return Run(
        texts=texts,
        requests=len(samples),
        seconds=round(seconds, 3),
        texts_per_s=round(texts / seconds, digits),
        latency_p50_s=round(float(np.percentile(latencies, 50)), 3),
        latency_p95_s=round(float(np.percentile(latencies, 95)), 3),
        tokens_per_text=round(sum(s[3] for s in samples) / texts, 1),
        bytes_per_response=round(sum(s[4] for s in samples) / len(samples)),
    )


async def run_batches(
    send: Sender, batches: list[list[str]], clients: int, digits: int = 2
) -> tuple[Run, np.ndarray]:
    """Every batch once, `clients` at a time; the run and all vectors in request order."""
    replies: list[Reply | None] = [None] * len(batches)

    def keep(i: int, reply: Reply) -> None:
        replies[i] = reply

    started, samples = await closed_loop(
        send, batches.__getitem__, clients, Plan.fixed(len(batches)), keep
    )
    vectors = np.concatenate([r.vectors for r in replies if r is not None])
    return summarize(started, samples, digits), vectors


def describe(run: Run) -> str:
    """One progress line for a run."""
    return (
        f"{run.texts_per_s:,.1f} texts/s ({run.texts} texts in {run.seconds:.1f} s,"
        f" latency p50 {run.latency_p50_s:.2f} s, p95 {run.latency_p95_s:.2f} s)"
    )


def batch_stats(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the appliance's micro-batcher did between two snapshots of its counters."""
    passes = after["forward_passes"] - before["forward_passes"]
    items = after["items"] - before["items"]
    padded = after["padded_tokens"] - before["padded_tokens"]
    real = after["real_tokens"] - before["real_tokens"]
    return {
        "forward_passes": passes,
        "texts_per_pass": round(items / passes, 1) if passes else None,
        "padded_tokens_per_pass": round(padded / passes) if passes else None,
        "fill": round(real / padded, 3) if padded else None,
    }
