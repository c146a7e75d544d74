"""Indexing jobs: docs/s of a background job vs the same documents in one direct index call.

    python bench/jobs.py [--documents 1000] [--batch-items 16 64 256]

In one process, on the same engine and store: the documents are indexed once through
`IndexPipeline.index` in calls of `ingest.max_documents_per_request` (what POST /v1/index does),
then once per `--batch-items` value as an indexing job (spooled to the journal, run by the jobs
runner, each batch logged), each into a fresh collection. The ratio job/direct is the cost of
the journal and of the smaller pipeline calls.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lib.results import dated_path, markdown_table, write_json

from rag_appliance.ingest.pipeline import Document
from rag_appliance.jobs.store import Job, now
from rag_appliance.local_commands import running
from rag_appliance.settings import load_settings

WORDS = ("goat", "island", "harbour", "llama", "stone", "wind", "salt", "meadow", "ferry")


def _text(i: int) -> str:
    return f"Document {i}. " + " ".join(f"{WORDS[(i * 5 + n) % 9]}{n % 7}" for n in range(60))


async def _job(services: Any, collection: str, count: int) -> float:
    runner = services.require_jobs()
    job = Job(runner.store.new_id(), "documents", collection, None, 0, now())
    spool = runner.store.spool(job.id, 1 << 40)
    started = time.perf_counter()
    for i in range(count):
        spool.add_document({"text": _text(i), "id": f"d{i}", "metadata": {}, "source": None})
    runner.store.commit(job, spool)
    runner.submit(job)
    for _ in range(10**9):  # polled as a client of GET /v1/index/jobs/{id} would
        if job.finished:
            break
        await asyncio.sleep(0.05)
    assert job.status == "completed" and len(job.done) == count, job.status
    return time.perf_counter() - started


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """The direct run, then one job per batch size."""
    rows: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(args.config).model_copy(update={"data_dir": Path(tmp)})
        async with running(settings) as services:
            pipeline = services.require_pipeline()
            docs = [Document(_text(i), id=f"d{i}") for i in range(args.documents)]
            await pipeline.index("warmup", docs[:32])
            step = settings.ingest.max_documents_per_request
            started = time.perf_counter()
            for start in range(0, len(docs), step):
                await pipeline.index("direct", docs[start : start + step])
            rows["direct"] = time.perf_counter() - started
            for size in args.batch_items:
                runner = services.require_jobs()
                runner.settings = runner.settings.model_copy(update={"batch_items": size})
                rows[f"job, batch_items={size}"] = await _job(
                    services, f"job{size}", args.documents
                )
    return {"documents": args.documents, "seconds": rows}


def main() -> None:
    """Parse flags, run, print a table with ratios and save the raw figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--batch-items", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--config", default=None, help="YAML profile (default: CPU profile)")
    args = parser.parse_args()
    figures = asyncio.run(run(args))
    command = "python " + shlex.join(["bench/jobs.py", *sys.argv[1:]])
    seconds = figures["seconds"]
    base = seconds["direct"]
    rows = [
        [name, f"{s:.1f}", f"{figures['documents'] / s:.1f}", f"{base / s:.2f}"]
        for name, s in seconds.items()
    ]
    print(f"command: `{command}`, {figures['documents']} documents of ~80 tokens")
    print(markdown_table(["path", "seconds", "docs/s", "rate vs direct"], "lrrr", rows))
    out = dated_path("jobs", "cpu", dt.datetime.now(), keep_earlier=False)
    write_json(out, {"command": command, **figures})
    print(f"raw: {out}")


if __name__ == "__main__":
    main()
