"""Bulk indexing over HTTP (`index --server`) vs the in-process pipeline, on the same files.

    python bench/bulk.py [--docs 2782] [--workers 8] [--out PATH]

Writes the BEIR test sets' documents (tests/data/beir-pystdlib as .md, beir-manpages as .txt
and .html) as files, then indexes them twice, one run after the other in this process's run:

* in-process: `ingest.files.index_files` in steps of 32 files, as the local `rag-appliance
  index` does, with the pipeline's parse, chunk, embed and upsert stages timed (wrappers on the
  instance: busy seconds per stage, their share of the wall time);
* over HTTP: a `rag-appliance serve` subprocess (generation and UI off) fed by the remote
  client (`remote.index.index_remote`, `--workers` uploads in flight), with the server's
  embedding forward seconds read from /metrics.

Then the parser alone: every file through the parse sandbox with all `ingest.parse_workers`
busy, as documents/s, against the embedder's documents/s from the in-process run: the lower
one is the bottleneck. Prints documents/s, chunks/s and the HTTP / in-process ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import html
import json
import os
import re
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from lib import ROOT
from lib.driver import log
from lib.machine import cpu_info, offline, quiet_transformers
from lib.results import command_line, dated_path, ratio, write_json
from lib.servers import EMBEDDINGS_ONLY, appliance_spec, ensure_ready, launch, stop_server

T = TypeVar("T")
SETS = ("beir-pystdlib", "beir-manpages")
STAGES = ("parse", "chunk", "embed", "upsert")


def write_files(folder: Path, most: int) -> int:
    """The sets' documents as files (md, txt, html in turn); how many were written."""
    written = 0
    for name in SETS:
        lines = (ROOT / "tests" / "data" / name / "corpus.jsonl").read_text("utf-8").splitlines()
        for line in lines:
            if written >= most:
                return written
            row = json.loads(line)
            title, text = str(row.get("title") or row["_id"]), str(row.get("text") or "")
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(row["_id"]))[:80] or f"doc{written}"
            kind = "md" if name == "beir-pystdlib" else ("html" if written % 2 else "txt")
            path = folder / name / f"{stem}-{written}.{kind}"
            path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "md":
                body = f"# {title}\n\n{text}\n"
            elif kind == "html":
                paras = "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n") if p)
                body = f"<html><head><title>{html.escape(title)}</title></head><body>{paras}"
                body += "</body></html>"
            else:
                body = f"{title}\n\n{text}\n"
            path.write_text(body, encoding="utf-8")
            written += 1
    return written


class StageClock:
    """Busy seconds per pipeline stage, from wrappers set on one pipeline's instances."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)

    def wrap_async(
        self, stage: str, fn: Callable[..., Awaitable[T]]
    ) -> Callable[..., Awaitable[T]]:
        """`fn` timed into `stage`."""

        @functools.wraps(fn)
        async def timed(*args: Any, **kwargs: Any) -> T:
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - started

        return timed

    def wrap_sync(self, stage: str, fn: Callable[..., T]) -> Callable[..., T]:
        """`fn` timed into `stage` (it runs on a worker thread)."""

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> T:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - started

        return timed

    def install(self, pipeline: Any) -> None:
        """Time the pipeline's parse, chunk (+ hashing), embed and upsert calls."""
        pipeline.sandbox.parse = self.wrap_async("parse", pipeline.sandbox.parse)
        pipeline._prepare = self.wrap_sync("chunk", pipeline._prepare)
        pipeline._embed = self.wrap_async("embed", pipeline._embed)
        store = pipeline.store
        for method in ("upsert", "replace_documents"):
            if hasattr(store, method):
                setattr(store, method, self.wrap_sync("upsert", getattr(store, method)))


def _settings(data_dir: Path) -> Any:
    from rag_appliance.settings import load_settings

    settings = load_settings()
    server = settings.server.model_copy(update={"log_level": "warning"})
    generation = settings.generation.model_copy(update={"enabled": False})
    return settings.model_copy(
        update={"data_dir": data_dir, "server": server, "generation": generation}
    )


async def in_process(folder: Path, data_dir: Path) -> dict[str, Any]:
    """index_files in steps of 32, stages timed; then the parser alone, all workers busy."""
    from rag_appliance.ingest.files import FileBlob, index_files
    from rag_appliance.local_commands import running
    from rag_appliance.remote.walk import walk

    files, _ = walk([str(folder)])
    load_before = os.getloadavg()[0]
    settings = _settings(data_dir)
    clock = StageClock()
    docs = chunks = failed = 0
    async with running(settings) as services:
        pipeline = services.require_pipeline()
        # Warm: the parse workers started and the model's first batch run, outside the clock.
        await index_files(pipeline, "warm", [FileBlob("warm.txt", b"warm up the engine")])
        clock.install(pipeline)
        started = time.perf_counter()
        for start in range(0, len(files), 32):
            step = files[start : start + 32]
            blobs = [FileBlob(f.name, f.path.read_bytes()) for f in step]
            for outcome in await index_files(pipeline, "bulk", blobs):
                failed += outcome.error is not None
                docs += outcome.error is None
                chunks += outcome.chunks
        wall = time.perf_counter() - started
        stages = dict(clock.seconds)  # before the parser-alone run, which the clock also sees
        parse_rate = await parse_alone(pipeline, files, settings.ingest.parse_workers)
    embed_s = stages["embed"]
    return {
        "documents": docs,
        "chunks": chunks,
        "failed": failed,
        "seconds": round(wall, 2),
        "documents_per_s": round(docs / wall, 1),
        "chunks_per_s": round(chunks / wall, 1),
        "stage_seconds": {k: round(v, 2) for k, v in stages.items()},
        "stage_share": {k: round(v / wall, 3) for k, v in stages.items()},
        "other_share": round(1 - sum(stages.values()) / wall, 3),
        # Other jobs on the machine slow either run: the 1-minute load average around it.
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "parse_workers": settings.ingest.parse_workers,
        "parser_alone_documents_per_s": round(parse_rate, 1),
        "embedder_documents_per_s": round(docs / embed_s, 1) if embed_s else None,
    }


async def parse_alone(pipeline: Any, files: list[Any], workers: int) -> float:
    """Documents/s of the parse sandbox with every worker process busy (2 files in flight each)."""
    gate = asyncio.Semaphore(2 * workers)

    async def one(item: Any) -> None:
        async with gate:
            await pipeline.sandbox.parse(item.path.read_bytes(), item.name, None)

    started = time.perf_counter()
    await asyncio.gather(*(one(f) for f in files))
    return len(files) / (time.perf_counter() - started)


def _metric_sum(exposition: str, name: str) -> float:
    """The sum of a histogram's `_sum` samples in a Prometheus exposition."""
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith(f"{name}_sum"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def over_http(folder: Path, base: str, workers: int) -> dict[str, Any]:
    """The remote client's run against the server; the server's embed seconds from /metrics."""
    import httpx

    from rag_appliance.remote.client import RemoteClient
    from rag_appliance.remote.index import index_remote

    forward = "rag_embedding_forward_seconds"
    load_before = os.getloadavg()[0]
    async with httpx.AsyncClient(base_url=base, timeout=60) as plain:
        await plain.post("/v1/index", json={"collection": "warm", "texts": ["warm up"]})
        before = _metric_sum((await plain.get("/metrics")).text, forward)
        async with RemoteClient(base, connections=workers + 2) as client:
            summary = await index_remote(client, [str(folder)], "bulk", {}, workers, False)
        after = _metric_sum((await plain.get("/metrics")).text, forward)
    wall = summary.seconds
    docs = summary.indexed + summary.unchanged
    return {
        "documents": docs,
        "chunks": summary.chunks,
        "failed": summary.failed,
        "workers": workers,
        "seconds": round(wall, 2),
        "documents_per_s": round(docs / wall, 1),
        "chunks_per_s": round(summary.chunks / wall, 1),
        "megabytes_sent": round(summary.bytes_sent / 1e6, 2),
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "server_embed_forward_share": round((after - before) / wall, 3),
    }


def main() -> None:
    """Build the files, run both ways, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=2782, help="files to index (at most 2782)")
    parser.add_argument("--workers", type=int, default=8, help="uploads in flight over HTTP")
    parser.add_argument("--out", help="result file (default bench/results/bulk-cpu-<date>.json)")
    args = parser.parse_args()
    offline()
    quiet_transformers()
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
        folder = Path(tmp) / "files"
        count = write_files(folder, args.docs)
        log(f"{count} files under {folder}")
        local = asyncio.run(in_process(folder, Path(tmp) / "local"))
        log(f"in-process: {local}")
        env = EMBEDDINGS_ONLY | {"RAG_DATA_DIR": str(Path(tmp) / "served")}
        server = launch(appliance_spec("bulk"), env=env)
        try:
            ensure_ready(server)
            http = asyncio.run(over_http(folder, server.base, args.workers))
        finally:
            stop_server(server.proc)
        log(f"over HTTP: {http}")
    figures = {
        "files": count,
        "machine": cpu_info(),
        "in_process": local,
        "http": http,
        "ratio_http_over_in_process": {
            "documents_per_s": ratio(http["documents_per_s"], local["documents_per_s"]),
            "chunks_per_s": ratio(http["chunks_per_s"], local["chunks_per_s"]),
        },
        "bottleneck": "parser"
        if local["parser_alone_documents_per_s"] < (local["embedder_documents_per_s"] or 0)
        else "embedder",
    }
    print(_report(figures))
    out = dated_path("bulk", "cpu", dt.datetime.now(), args.out)
    write_json(out, {"command": command_line(), **figures})
    log(f"results in {out}")


def _report(f: dict[str, Any]) -> str:
    local, http = f["in_process"], f["http"]
    rows = [
        f"{f['files']} files; {local['chunks']} chunks",
        f"{'':<14}{'docs/s':>10}{'chunks/s':>10}{'seconds':>10}",
        f"{'in-process':<14}{local['documents_per_s']:>10}{local['chunks_per_s']:>10}"
        f"{local['seconds']:>10}",
        f"{'over HTTP':<14}{http['documents_per_s']:>10}{http['chunks_per_s']:>10}"
        f"{http['seconds']:>10}",
        f"ratio HTTP / in-process: {f['ratio_http_over_in_process']}",
        f"load average (1 min) before/after: in-process {local['load_average']}, "
        f"HTTP {http['load_average']}",
        "in-process share of wall time: "
        + ", ".join(f"{k} {100 * v:.1f}%" for k, v in local["stage_share"].items())
        + f", other {100 * local['other_share']:.1f}%",
        f"over HTTP, the server's embedding forward passes: "
        f"{100 * http['server_embed_forward_share']:.1f}% of wall time",
        f"parser alone ({local['parse_workers']} processes): "
        f"{local['parser_alone_documents_per_s']} docs/s; embedder: "
        f"{local['embedder_documents_per_s']} docs/s -> bottleneck: {f['bottleneck']}",
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    main()
