"""Memory of a large text upload: peak RSS of the server's process tree above idle.

    python bench/upload_memory.py [--mb 40] [--baseline-mb 4] [--tuned-heap]

For each size (the baseline first), a fresh appliance (`rag-appliance serve`, generation and UI
off, its own data dir) is started; its process tree's RSS (server plus parse workers) is read
at idle, then sampled with psutil every 50 ms while one .txt file of that size, built from the
man-page and Python-docs corpora in tests/data, is uploaded to /v1/index/upload and indexed.
Printed: MB above idle for each size, their ratio, the time and chunks; the raw figures go to
bench/results/upload-memory-<date>.json. `--tuned-heap` starts the servers with glibc's mmap
threshold fixed at 1 MiB and two arenas (the environment form of `rag_appliance.heap.tune`),
to compare with a run without it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from lib import ROOT
from lib.driver import log
from lib.results import command_line, dated_path, markdown_table, ratio, verdict, write_json
from lib.servers import EMBEDDINGS_ONLY, appliance_spec, ensure_ready, launch, stop_server

from rag_appliance import heap

CORPORA = [
    ROOT / "tests" / "data" / name / "corpus.jsonl" for name in ("beir-manpages", "beir-pystdlib")
]
MB = 1024 * 1024
SAMPLE_S = 0.05
GOAL_MB = 1024  # the bound for a 40 MB upload


def corpus_text(size: int) -> bytes:
    """About `size` bytes of real prose and reference text, paragraphs repeated as needed."""
    paragraphs: list[str] = []
    for path in CORPORA:
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            paragraphs.append(f"{record.get('title', '')}\n\n{record['text']}")
    block = "\n\n".join(paragraphs).encode("utf-8")
    data = block * (size // len(block) + 1)
    cut = data.rfind(b"\n\n", 0, size)
    return data[: cut if cut > 0 else size]


def tree_rss(proc: psutil.Process) -> int:
    """RSS of a process and all its descendants (parse workers included), in bytes."""
    total = 0
    for member in [proc, *proc.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.Error:  # a worker that just ended
            continue
    return total


class PeakSampler:
    """Samples a process tree's RSS on a thread until stopped; keeps the peak."""

    def __init__(self, proc: psutil.Process) -> None:
        self.proc = proc
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.proc))
            self.samples += 1
            if self.samples % 600 == 0:  # every ~30 s: a long run shows its peak so far
                log(f"  peak so far {self.peak / MB:,.0f} MB after {self.samples} samples")
            self._stop.wait(SAMPLE_S)


# glibc's tunables as environment variables: what heap.tune() sets with mallopt.
TUNED_HEAP = heap.child_env()


def measure(size_mb: float, data_dir: Path, tuned_heap: bool = False) -> dict[str, Any]:
    """One fresh server, idle RSS, then the peak during one upload of `size_mb` MB of text."""
    data = corpus_text(int(size_mb * MB))
    env = {**EMBEDDINGS_ONLY, "RAG_DATA_DIR": str(data_dir), **(TUNED_HEAP if tuned_heap else {})}
    server = launch(appliance_spec(f"upload-memory-{size_mb:g}mb"), env=env)
    try:
        ensure_ready(server)
        proc = psutil.Process(server.proc.pid)
        time.sleep(2)  # let start-up allocations settle
        idle = tree_rss(proc)
        log(f"{size_mb:g} MB: idle {idle / MB:,.0f} MB; uploading {len(data) / MB:.1f} MB")
        started = time.perf_counter()
        with PeakSampler(proc) as sampler:
            response = httpx.post(
                f"{server.base}/v1/index/upload",
                data={"collection": "mem"},
                files=[("files", ("big.txt", data, "text/plain"))],
                timeout=None,
            )
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        (result,) = response.json()["files"]
        if result["status"] != "indexed":
            raise RuntimeError(f"the upload was not indexed: {result}")
        return {
            "upload_mb": round(len(data) / MB, 2),
            "chunks": result["chunks"],
            "seconds": round(elapsed, 1),
            "idle_mb": round(idle / MB, 1),
            "peak_mb": round(sampler.peak / MB, 1),
            "above_idle_mb": round((sampler.peak - idle) / MB, 1),
            "samples": sampler.samples,
        }
    finally:
        stop_server(server.proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=40.0, help="the large upload, in MB")
    parser.add_argument("--baseline-mb", type=float, default=4.0, help="the baseline upload")
    parser.add_argument(
        "--tuned-heap", action="store_true", help="servers with a fixed mmap threshold, 2 arenas"
    )
    parser.add_argument("--out", help="JSON path (default bench/results/upload-memory-<date>)")
    args = parser.parse_args()
    now = dt.datetime.now(dt.UTC)
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="upload-memory-") as tmp:
        for label, size in (("baseline", args.baseline_mb), ("large", args.mb)):
            runs[label] = measure(size, Path(tmp) / label, args.tuned_heap)
            log(f"{label}: {runs[label]}")
    base, large = runs["baseline"], runs["large"]
    summary = {
        "above_idle_ratio": ratio(large["above_idle_mb"], base["above_idle_mb"], 2),
        "seconds_ratio": ratio(large["seconds"], base["seconds"], 2),
        "size_ratio": ratio(large["upload_mb"], base["upload_mb"], 2),
        "large_under_goal": large["above_idle_mb"] < GOAL_MB,
        "tuned_heap": args.tuned_heap,
    }
    rows = [
        [label, f"{r['upload_mb']:.1f}", f"{r['chunks']:,}", f"{r['seconds']:.1f}",
         f"{r['idle_mb']:,.0f}", f"{r['peak_mb']:,.0f}", f"{r['above_idle_mb']:,.0f}"]
        for label, r in runs.items()
    ]  # fmt: skip
    print(
        markdown_table(
            ["upload", "MB", "chunks", "seconds", "idle RSS MB", "peak RSS MB", "above idle MB"],
            "lrrrrrr",
            rows,
        )
    )
    print(
        f"\nlarge / baseline: {summary['size_ratio']}x the bytes, "
        f"{summary['above_idle_ratio']}x the memory above idle, {summary['seconds_ratio']}x the "
        f"time; large upload above idle: {large['above_idle_mb']:,.0f} MB "
        f"(goal < {GOAL_MB} MB: {verdict(GOAL_MB - large['above_idle_mb'], 0)})"
    )
    path = dated_path("upload-memory", "cpu", now, args.out)
    write_json(
        path,
        {"command": command_line(), "date": now.isoformat(), "runs": runs, "summary": summary},
    )
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
