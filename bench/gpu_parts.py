"""bench/gpu.py's measured parts past the ceiling: (b) the engine, (c) the appliance, (d) the seed.

(b) runs the appliance's EmbeddingService in this process; (c) and (d) are servers (one of each
per model, `lib.servers`) driven over HTTP by `lib.load`. Every part gets the same closed loop
(`lib.driver`) and reports one row per bucket.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from gpu_models import Arch
from lib.driver import (
    Plan,
    batch_stats,
    checked,
    log,
    summarize,
    timed_loop,
    warm_batches,
    warm_up,
)
from lib.engine import attention_of, build_engine, engine_sender
from lib.load import LoadJob, http_client, http_sender, run_load
from lib.machine import free_device_memory
from lib.servers import EMBEDDINGS_ONLY, Server, ServerSpec, appliance_spec, seed_spec


def appliance_env(
    arch: Arch, folder: Path, device: str, data_dir: Path, extra: dict[str, str]
) -> dict[str, str]:
    """RAG_* settings that serve `folder` as `arch` on `device`, embeddings only."""
    env = {
        "RAG_EMBEDDING__MODEL": str(folder),
        "RAG_EMBEDDING__DEVICE": device,
        "RAG_EMBEDDING__DTYPE": "float16" if device.startswith("cuda") else "float32",
        **EMBEDDINGS_ONLY,
        "RAG_DATA_DIR": str(data_dir),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    if arch.profile:
        env["RAG_EMBEDDING__PROFILE"] = arch.profile
    return {**env, **extra}


# ---------------------------------------------------------------------------------------------
# (b) the engine in process


async def drive_engine(
    services: Any,
    work: dict[str, list[str]],
    probes: dict[str, list[str]],
    args: argparse.Namespace,
    dim: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Start the engine; per bucket: warm up, embed the probe, run the closed loop; stop it."""
    svc = services.embedding
    send = checked(engine_sender(svc), dim, "engine")
    plan = Plan(args.seconds, args.clients, 1_000_000)
    out: dict[str, dict[str, Any]] = {}
    vectors: dict[str, np.ndarray] = {}
    await svc.start()
    try:
        for bucket, texts in work.items():
            await warm_up(send, warm_batches(texts, args.batch, args.clients))
            vectors[bucket] = (await send(probes[bucket])).vectors
            before = asdict(svc.batcher.stats)
            started, samples = await timed_loop(send, texts, args.batch, args.clients, plan)
            run = summarize(started, samples)
            out[bucket] = {**asdict(run), **batch_stats(before, asdict(svc.batcher.stats))}
            log(f"engine {bucket}: {run.texts_per_s:,.1f} texts/s ({run.texts} texts)")
    finally:
        await svc.stop()
    return out, vectors


def run_engine(
    env: dict[str, str],
    work: dict[str, list[str]],
    probes: dict[str, list[str]],
    args: argparse.Namespace,
    dim: int,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Build the appliance's services in this process from `env` and drive the engine."""
    services, meta, load_seconds = build_engine(env=env)
    meta["attention"] = attention_of(services)
    meta["load_seconds"] = load_seconds
    meta["batch_max_tokens"] = services.settings.embedding.batch_max_tokens
    meta["batch_max_size"] = services.settings.embedding.batch_max_size
    log(f"engine: loaded in {meta['load_seconds']} s ({meta.get('dtype')}, {meta['attention']})")
    try:
        buckets, vectors = asyncio.run(drive_engine(services, work, probes, args, dim))
    finally:
        if services.store is not None:
            services.store.close()
        del services
        free_device_memory()
    return {"engine": meta, "buckets": buckets}, vectors


# ---------------------------------------------------------------------------------------------
# (c) the appliance and (d) the seed over HTTP


def server_specs(arch: Arch, folder: Path, device: str, parts: Sequence[str]) -> list[ServerSpec]:
    """The appliance and the seed (bench/seed_server.py on the same folder) for one model."""
    specs = []
    if "appliance" in parts:
        specs.append(appliance_spec(f"gpu-appliance-{arch.key}"))
    if "seed" in parts:
        options = ["--model", str(folder), "--pooling", arch.pooling]
        options += ["--max-seq", str(arch.max_length), "--device", device]
        specs.append(seed_spec(f"gpu-seed-{arch.key}", options))
    return specs


async def probe_server(
    server: Server, texts: list[str], dim: int
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Embed the probe texts; the appliance's batcher counters (from /ready) too."""
    async with http_client(2) as client:
        send = checked(
            http_sender(client, f"{server.base}/v1/embeddings", server.spec.bare_list_body),
            dim,
            server.spec.name,
        )
        vectors = (await send(texts)).vectors
        stats = None
        if not server.spec.bare_list_body:
            stats = (await client.get(f"{server.base}/ready")).json()["embedding"]["engine"]
    return vectors, stats


async def ready_stats(server: Server) -> dict[str, Any]:
    """The appliance's batcher counters."""
    async with http_client(1) as client:
        body = (await client.get(f"{server.base}/ready")).json()
    stats: dict[str, Any] = body["embedding"]["engine"]
    return stats


def measure_server(
    server: Server,
    work: dict[str, list[str]],
    probes: dict[str, list[str]],
    args: argparse.Namespace,
    dim: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Per bucket: the probe, then the closed loop (the seed's capped at --seed-requests)."""
    seed = server.spec.bare_list_body
    out: dict[str, dict[str, Any]] = {}
    vectors: dict[str, np.ndarray] = {}
    for bucket, texts in work.items():
        vectors[bucket], before = asyncio.run(probe_server(server, probes[bucket], dim))
        plan = (
            Plan.fixed(args.seed_requests) if seed else Plan(args.seconds, args.clients, 1_000_000)
        )
        job = LoadJob(
            name=f"{server.spec.name}/{bucket}",
            url=f"{server.base}/v1/embeddings",
            bare_list=seed,
            texts=texts,
            batch=args.batch,
            clients=args.clients,
            plan=plan,
            dim=dim,
            warm=not seed,
        )
        run = run_load(job, 1 if seed else args.client_procs)
        out[bucket] = asdict(run)
        if before is not None:
            out[bucket].update(batch_stats(before, asyncio.run(ready_stats(server))))
        log(f"{server.spec.name} {bucket}: {run.texts_per_s:,.1f} texts/s ({run.texts} texts)")
    return out, vectors
