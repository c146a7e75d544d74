"""HTTP load: embeddings requests in either body format, from this process or spawned ones.

The appliance gets the OpenAI body with `encoding_format: "base64"` (the official openai
client's default), the seed's server a bare JSON list of strings (it answers with JSON floats).
A `LoadJob` is one closed loop against one URL; `run_load` shares it out over load processes
(started together at a barrier) so that the client is not the bottleneck.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import math
import multiprocessing as mp
import queue as queue_module
import threading
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import orjson

from lib.driver import (
    Plan,
    Reply,
    Run,
    Sample,
    Sender,
    checked,
    summarize,
    timed_loop,
    warm_batches,
    warm_up,
)

BARRIER_TIMEOUT_S = 300.0


def decode_reply(content: bytes, base64_vectors: bool) -> Reply:
    """Parse an OpenAI-shaped embeddings body; base64 rows are little-endian float32."""
    body = orjson.loads(content)
    data = body["data"]
    if [d["index"] for d in data] != list(range(len(data))):
        raise RuntimeError("response rows are not in input order")
    if base64_vectors:
        raw = b"".join(base64.b64decode(d["embedding"]) for d in data)
        vectors = np.frombuffer(raw, dtype="<f4").reshape(len(data), -1)
    else:
        vectors = np.asarray([d["embedding"] for d in data], dtype=np.float32)
    return Reply(vectors=vectors, tokens=int(body["usage"]["prompt_tokens"]), nbytes=len(content))


def request_body(texts: list[str], bare_list: bool, model: str | None = None) -> Any:
    """A bare list for the seed; the OpenAI body (base64, `model` if given) for the appliance."""
    if bare_list:
        return texts
    body: dict[str, Any] = {"input": texts}
    if model is not None:
        body["model"] = model
    body["encoding_format"] = "base64"
    return body


def http_sender(
    client: httpx.AsyncClient,
    url: str,
    bare_list: bool,
    model: str | None = None,
    name: str | None = None,
) -> Sender:
    """POST one batch in the server's own body format; errors name `name` (default: the URL)."""

    async def send(texts: list[str]) -> Reply:
        response = await client.post(
            url,
            content=orjson.dumps(request_body(texts, bare_list, model)),
            headers={"content-type": "application/json"},
        )
        if response.status_code != 200:
            raise RuntimeError(f"{name or url}: HTTP {response.status_code}: {response.text[:300]}")
        return decode_reply(response.content, base64_vectors=not bare_list)

    return send


def http_client(connections: int) -> httpx.AsyncClient:
    """A keep-alive client with room for every worker (no proxies from the environment)."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=limits, trust_env=False)


@dataclass(frozen=True)
class LoadJob:
    """One HTTP load generator's share of a closed-loop run (picklable for spawned processes)."""

    name: str
    url: str
    bare_list: bool
    texts: list[str]
    batch: int
    clients: int
    plan: Plan
    dim: int
    warm: bool
    index: int = 0
    stride: int = 1


async def run_job(job: LoadJob, barrier: Any = None) -> tuple[float, list[Sample]]:
    """Warm the connections (one request per client), wait at the barrier, run the loop."""
    async with http_client(job.clients + 2) as client:
        send = checked(http_sender(client, job.url, job.bare_list), job.dim, job.name)
        if job.warm:
            await warm_up(send, warm_batches(job.texts, job.batch, job.clients))
        if barrier is not None:
            await asyncio.to_thread(barrier.wait, BARRIER_TIMEOUT_S)
        return await timed_loop(
            send, job.texts, job.batch, job.clients, job.plan, job.index, job.stride
        )


def _job_process(job: LoadJob, barrier: Any, queue: Any) -> None:
    """Entry point of a spawned load process: its samples, or its error, go to the queue."""
    try:
        started, samples = asyncio.run(run_job(job, barrier))
        queue.put(("ok", started, samples))
    except BaseException as exc:
        barrier.abort()
        queue.put(("error", 0.0, f"{type(exc).__name__}: {exc}"))


def split_job(job: LoadJob, procs: int) -> list[LoadJob]:
    """Share the clients and the request plan out over `procs` load processes."""
    procs = max(1, min(procs, job.clients))
    jobs = []
    for p in range(procs):
        clients = job.clients // procs + (1 if p < job.clients % procs else 0)
        plan = Plan(
            job.plan.seconds,
            math.ceil(job.plan.min_requests / procs),
            math.ceil(job.plan.max_requests / procs),
        )
        jobs.append(dataclasses.replace(job, clients=clients, plan=plan, index=p, stride=procs))
    return jobs


def run_load(job: LoadJob, procs: int) -> Run:
    """Closed-loop HTTP load from this process, or from `procs` spawned ones started together."""
    if procs <= 1 or job.clients <= 1:
        started, samples = asyncio.run(run_job(job))
        return summarize(started, samples)
    jobs = split_job(job, procs)
    ctx = mp.get_context("spawn")  # no fork of a process that holds a CUDA context
    barrier = ctx.Barrier(len(jobs) + 1)
    queue = ctx.Queue()
    workers = [ctx.Process(target=_job_process, args=(j, barrier, queue)) for j in jobs]
    for w in workers:
        w.start()
    try:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(BARRIER_TIMEOUT_S)
        results: list[tuple[str, float, Any]] = []
        while len(results) < len(workers):
            try:
                results.append(queue.get(timeout=1.0))
            except queue_module.Empty:
                if not any(w.is_alive() for w in workers) and queue.empty():
                    raise RuntimeError(
                        f"{job.name}: a load process died without a result"
                    ) from None
    finally:
        for w in workers:
            w.join(timeout=30)
            if w.is_alive():
                w.kill()
    errors = [str(r[2]) for r in results if r[0] != "ok"]
    if errors:
        raise RuntimeError(f"{job.name}: load process failed: {errors[0]}")
    started = min(float(r[1]) for r in results)
    samples = [s for r in results for s in r[2]]
    return summarize(started, samples)
