"""bench/lib/driver.py: batches, the closed loop's plan and accounting, checks, counters."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest


@pytest.fixture
def driver(bench_module: Any) -> Any:
    return bench_module("lib.driver")


def unit_rows(n: int, dim: int = 2) -> np.ndarray:
    v = np.zeros((n, dim), dtype=np.float32)
    v[:, 0] = 1.0
    return v


def test_batches_wrap_around_the_bucket(driver: Any) -> None:
    texts = ["a", "b", "c", "d", "e"]
    assert driver.batch_at(texts, 0, 2) == ["a", "b"]
    assert driver.batch_at(texts, 2, 2) == ["e", "a"]
    assert driver.batch_at(texts, -1, 2) == ["d", "e"]
    assert driver.make_batches(texts, 3, 2) == [["a", "b"], ["c", "d"], ["e", "a"]]
    # Warm-up batches come from the far end: one per client, none equal to request 0's.
    assert driver.warm_batches(texts, 2, 2) == [["d", "e"], ["b", "c"]]


def test_closed_loop_sends_each_request_once_and_counts_it(driver: Any) -> None:
    async def send(texts: list[str]) -> Any:
        await asyncio.sleep(0.001)
        return driver.Reply(vectors=unit_rows(len(texts)), tokens=3 * len(texts), nbytes=10)

    def batch_for(i: int) -> list[str]:
        return [f"t{i}", f"u{i}"]

    kept: dict[int, Any] = {}
    plan = driver.Plan.fixed(5)
    started, samples = asyncio.run(
        driver.closed_loop(send, batch_for, 3, plan, lambda i, r: kept.setdefault(i, r))
    )
    assert sorted(kept) == [0, 1, 2, 3, 4]
    assert len(samples) == 5
    assert all(s[0] >= started and s[1] >= s[0] for s in samples)
    assert [s[2:] for s in samples] == [(2, 6, 10)] * 5
    run = driver.summarize(started, samples)
    assert (run.requests, run.texts, run.tokens_per_text, run.bytes_per_response) == (5, 10, 3, 10)


def test_closed_loop_keeps_to_min_and_max_requests(driver: Any) -> None:
    async def send(texts: list[str]) -> Any:
        await asyncio.sleep(0.002)
        return driver.Reply(vectors=unit_rows(len(texts)), tokens=1, nbytes=1)

    def count(plan: Any, clients: int = 2) -> int:
        _, samples = asyncio.run(driver.closed_loop(send, lambda i: ["x"], clients, plan))
        return len(samples)

    assert count(driver.Plan(0.0, 4, 100)) == 4  # the deadline is past: the minimum only
    assert count(driver.Plan(60.0, 1, 3)) == 3  # a long budget, but at most 3
    started = time.monotonic()
    n = count(driver.Plan(0.1, 1, 1_000_000))  # the time budget ends it
    assert 2 < n < 1_000_000
    assert time.monotonic() - started < 2.0


def test_closed_loop_runs_its_clients_concurrently(driver: Any) -> None:
    in_flight = 0
    peak = 0

    async def send(texts: list[str]) -> Any:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return driver.Reply(vectors=unit_rows(1), tokens=1, nbytes=1)

    asyncio.run(driver.closed_loop(send, lambda i: ["x"], 3, driver.Plan.fixed(9)))
    assert peak == 3


def test_timed_loop_takes_its_share_of_the_requests(driver: Any) -> None:
    seen: list[list[str]] = []

    async def send(texts: list[str]) -> Any:
        seen.append(texts)
        return driver.Reply(vectors=unit_rows(len(texts)), tokens=1, nbytes=1)

    texts = [str(i) for i in range(10)]
    plan = driver.Plan.fixed(3)
    asyncio.run(driver.timed_loop(send, texts, 1, 1, plan, offset=1, stride=2))
    assert seen == [["1"], ["3"], ["5"]]  # load process 1 of 2: every other request


def test_summarize_computes_rate_latency_and_sizes(driver: Any) -> None:
    samples = [(10.0, 11.0, 2, 10, 100), (10.5, 12.0, 4, 14, 300)]
    run = driver.summarize(10.0, samples)
    assert run.seconds == 2.0  # from the loop's start to the last answer
    assert run.texts == 6 and run.requests == 2
    assert run.texts_per_s == 3.0
    assert run.latency_p50_s == 1.25
    assert run.tokens_per_text == 4.0
    assert run.bytes_per_response == 200
    assert driver.summarize(0.0, [(0.0, 3.0, 1, 1, 1)], digits=2).texts_per_s == 0.33
    assert driver.summarize(0.0, [(0.0, 3.0, 1, 1, 1)]).texts_per_s == 0.3
    with pytest.raises(RuntimeError, match="no request completed"):
        driver.summarize(0.0, [])


def test_run_batches_returns_vectors_in_request_order(driver: Any) -> None:
    async def send(texts: list[str]) -> Any:
        i = int(texts[0])
        await asyncio.sleep(0.02 * (4 - i))  # later requests answer first
        v = np.zeros((1, 4), dtype=np.float32)
        v[0, i] = 1.0
        return driver.Reply(vectors=v, tokens=1, nbytes=1)

    run, vectors = asyncio.run(driver.run_batches(send, [["0"], ["1"], ["2"], ["3"]], 4))
    assert run.requests == 4
    np.testing.assert_array_equal(vectors, np.eye(4, dtype=np.float32))


def test_warm_up_sends_every_batch(driver: Any) -> None:
    seen: list[list[str]] = []

    async def send(texts: list[str]) -> Any:
        seen.append(texts)
        return driver.Reply(vectors=unit_rows(len(texts)), tokens=1, nbytes=1)

    asyncio.run(driver.warm_up(send, [["a"], ["b", "c"]]))
    assert sorted(seen) == [["a"], ["b", "c"]]


def test_checked_rejects_wrong_shapes_and_non_unit_vectors(driver: Any) -> None:
    def sender(vectors: np.ndarray) -> Any:
        async def send(texts: list[str]) -> Any:
            return driver.Reply(vectors=vectors, tokens=1, nbytes=1)

        return send

    good = driver.checked(sender(unit_rows(2)), 2, "x")
    assert asyncio.run(good(["a", "b"])).vectors.shape == (2, 2)
    with pytest.raises(RuntimeError, match="x: expected 3 x 2 vectors"):
        asyncio.run(good(["a", "b", "c"]))
    with pytest.raises(RuntimeError, match="expected 2 x 3"):
        asyncio.run(driver.checked(sender(unit_rows(2)), 3, "x")(["a", "b"]))
    with pytest.raises(RuntimeError, match="not unit length"):
        asyncio.run(driver.checked(sender(2 * unit_rows(2)), 2, "x")(["a", "b"]))
    nan = unit_rows(1)
    nan[0, 1] = np.nan
    with pytest.raises(RuntimeError, match="not unit length"):
        driver.check_unit(nan, "x")


def test_min_cosine_is_the_worst_row(driver: Any) -> None:
    a = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    assert driver.min_cosine(a, a) == 1.0
    b = np.array([[1.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    assert driver.min_cosine(a, b) == pytest.approx(2**-0.5, abs=1e-6)


def test_batch_stats_are_deltas_per_pass(driver: Any) -> None:
    before = {"forward_passes": 10, "items": 100, "padded_tokens": 1000, "real_tokens": 500}
    after = {"forward_passes": 14, "items": 140, "padded_tokens": 1800, "real_tokens": 1100}
    assert driver.batch_stats(before, after) == {
        "forward_passes": 4,
        "texts_per_pass": 10.0,
        "padded_tokens_per_pass": 200,
        "fill": 0.75,
    }
    idle = driver.batch_stats(before, before)
    assert idle["texts_per_pass"] is None and idle["fill"] is None


def test_describe_names_rate_and_latencies(driver: Any) -> None:
    run = driver.Run(1200, 10, 2.0, 600.0, 0.25, 0.5, 20.0, 100)
    assert driver.describe(run) == (
        "600.0 texts/s (1200 texts in 2.0 s, latency p50 0.25 s, p95 0.50 s)"
    )
