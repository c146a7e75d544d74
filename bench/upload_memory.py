"""Memory of a large text upload: peak RSS of the server's process tree above idle.

    python bench/upload_memory.py [--mb 40] [--baseline-mb 4] [--tuned-heap]

For each size (the baseline first), a fresh appliance (`rag-appliance serve`, generation and UI
off, its own data dir) is started; its process tree's memory is read at idle, then sampled with
psutil every 50 ms while one .txt file of that size, built from the man-page and Python-docs
corpora in tests/data, is uploaded to /v1/index/upload and indexed, and on until the store's
HNSW build that the upload set off has ended. Each part's peak RSS: the server, the server with
its parse workers (the upload's own processes, while the request ran), the index-build child
(a niced process, mostly page cache of the shard copy's memory-mapped files), the whole tree,
and the whole tree's anonymous memory; and the same in PSS, each resident page counted once
(RSS counts a page once per mapping, and Qdrant maps its vector files twice). Printed: MB
above idle for each size, their ratios, the time and chunks; the raw figures go to
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
PSS_EVERY = 20  # smaps_rollup walks every page table: about once a second
GOAL_MB = 1024  # the bound for a 40 MB upload
BUILD_WAIT_S = 1800


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


# The store's HNSW build runs as `python -c <script>` calling EdgeShard.optimize (edge_hnsw).
BUILD_MARK = "shard.optimize()"
PARTS = ("server", "parse", "build", "upload", "tree", "tree_anon")


def anon_bytes(pid: int) -> int:
    """A process's anonymous and shared-memory RSS (what the kernel cannot just drop, unlike
    the page cache of memory-mapped files, which RSS also counts), from /proc."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        fields = dict(line.split(":", 1) for line in f)
    return sum(int(fields[k].split()[0]) * 1024 for k in ("RssAnon", "RssShmem"))


def pss_bytes(pid: int) -> int:
    """A process's proportional set size: each resident page counted once, split between the
    processes (and the mappings) that share it. RSS counts a page once per mapping: Qdrant
    maps its vector files twice, so RSS shows the store's vectors at twice their size."""
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def tree_memory(proc: psutil.Process, pss: bool = False) -> dict[str, int]:
    """RSS (or with `pss`, PSS) of the server, of its parse workers, of its index-build child,
    of the first two (the upload's own processes) and of them all, and the anonymous RSS of
    them all, in bytes."""
    out = dict.fromkeys(PARTS, 0)
    for member in [proc, *proc.children(recursive=True)]:
        try:
            rss = pss_bytes(member.pid) if pss else member.memory_info().rss
            part = "server"
            if member.pid != proc.pid:
                part = "build" if BUILD_MARK in " ".join(member.cmdline()) else "parse"
            anon = anon_bytes(member.pid)
        except (psutil.Error, OSError):  # a worker that just ended
            continue
        out[part] += rss
        out["tree"] += rss
        out["tree_anon"] += anon
    out["upload"] = out["server"] + out["parse"]  # at the same instant
    return out


class PeakSampler:
    """Samples a process tree's memory on a thread until stopped; keeps each part's peak."""

    def __init__(self, proc: psutil.Process) -> None:
        self.proc = proc
        self.peak = dict.fromkeys(PARTS, 0)
        self.peak_pss = dict.fromkeys(PARTS, 0)  # sampled every PSS_EVERY samples (slower)
        self.samples = 0
        self.builds_seen = 0  # samples with an index-build child running
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
            now = tree_memory(self.proc)
            self.peak = {k: max(v, now[k]) for k, v in self.peak.items()}
            if self.samples % PSS_EVERY == 0:
                pss = tree_memory(self.proc, pss=True)
                self.peak_pss = {k: max(v, pss[k]) for k, v in self.peak_pss.items()}
            self.builds_seen += now["build"] > 0
            self.samples += 1
            if self.samples % 600 == 0:  # every ~30 s: a long run shows its peaks so far
                rss_mb = {k: round(v / MB) for k, v in self.peak.items()}
                pss_mb = {k: round(v / MB) for k, v in self.peak_pss.items()}
                log(f"  peaks so far (MB): RSS {rss_mb}, PSS {pss_mb}")
            self._stop.wait(SAMPLE_S)


def building(proc: psutil.Process) -> bool:
    """Whether the server's index-build child runs now."""
    try:
        return any(BUILD_MARK in " ".join(c.cmdline()) for c in proc.children(recursive=True))
    except psutil.Error:
        return False


def wait_for_build(proc: psutil.Process, sampler: PeakSampler, timeout_s: float) -> float:
    """After the upload: wait for the index build it caused (one that starts within 30 s) to
    end, so that its memory is in the peaks; the seconds waited."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout_s:
        if not building(proc) and (sampler.builds_seen or time.perf_counter() - began > 30):
            break
        time.sleep(0.5)
    return round(time.perf_counter() - began, 1)


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
        idle = tree_memory(proc)
        idle_pss = tree_memory(proc, pss=True)
        log(f"{size_mb:g} MB: idle {idle['tree'] / MB:,.0f} MB; uploading {len(data) / MB:.1f} MB")
        started = time.perf_counter()
        with PeakSampler(proc) as sampler:
            response = httpx.post(
                f"{server.base}/v1/index/upload",
                data={"collection": "mem"},
                files=[("files", ("big.txt", data, "text/plain"))],
                timeout=None,
            )
            elapsed = time.perf_counter() - started
            upload_peak, upload_pss = dict(sampler.peak), dict(sampler.peak_pss)
            waited = wait_for_build(proc, sampler, BUILD_WAIT_S)
        response.raise_for_status()
        (result,) = response.json()["files"]
        if result["status"] != "indexed":
            raise RuntimeError(f"the upload was not indexed: {result}")

        def above(peaks: dict[str, int], part: str, base: dict[str, int] = idle) -> float:
            return round((peaks[part] - base[part]) / MB, 1)

        return {
            "upload_mb": round(len(data) / MB, 2),
            "chunks": result["chunks"],
            "seconds": round(elapsed, 1),
            "build_wait_s": waited,
            "idle_mb": round(idle["tree"] / MB, 1),
            "peak_mb": round(sampler.peak["tree"] / MB, 1),
            # The request's own processes while it ran: the server and its parse workers.
            "upload_above_idle_mb": above(upload_peak, "upload"),
            "server_above_idle_mb": above(sampler.peak, "server"),
            "build_child_peak_mb": round(sampler.peak["build"] / MB, 1),
            # Everything, through the index build the upload caused.
            "above_idle_mb": above(sampler.peak, "tree"),
            "anon_above_idle_mb": above(sampler.peak, "tree_anon"),
            # The same in PSS (each page once), sampled about once a second.
            "idle_pss_mb": round(idle_pss["tree"] / MB, 1),
            "upload_pss_above_idle_mb": above(upload_pss, "upload", idle_pss),
            "server_pss_above_idle_mb": above(sampler.peak_pss, "server", idle_pss),
            "build_child_pss_peak_mb": round(sampler.peak_pss["build"] / MB, 1),
            "pss_above_idle_mb": above(sampler.peak_pss, "tree", idle_pss),
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
        "upload_above_idle_ratio": ratio(
            large["upload_above_idle_mb"], base["upload_above_idle_mb"], 2
        ),
        "seconds_ratio": ratio(large["seconds"], base["seconds"], 2),
        "size_ratio": ratio(large["upload_mb"], base["upload_mb"], 2),
        "large_upload_under_goal": large["upload_above_idle_mb"] < GOAL_MB,
        "large_tree_under_goal": large["above_idle_mb"] < GOAL_MB,
        "tuned_heap": args.tuned_heap,
    }
    rows = [
        [label, f"{r['upload_mb']:.1f}", f"{r['chunks']:,}", f"{r['seconds']:.1f}",
         f"{r['idle_mb']:,.0f}", f"{r['server_above_idle_mb']:,.0f}",
         f"{r['upload_above_idle_mb']:,.0f}", f"{r['build_child_peak_mb']:,.0f}",
         f"{r['above_idle_mb']:,.0f}", f"{r['anon_above_idle_mb']:,.0f}",
         f"{r['upload_pss_above_idle_mb']:,.0f}", f"{r['build_child_pss_peak_mb']:,.0f}",
         f"{r['pss_above_idle_mb']:,.0f}"]
        for label, r in runs.items()
    ]  # fmt: skip
    print(
        markdown_table(
            [
                "upload",
                "MB",
                "chunks",
                "seconds",
                "idle RSS MB",
                "server",
                "server + parse",
                "build child",
                "all, through the build",
                "all, anonymous",
                "server + parse, PSS",
                "build child, PSS",
                "all, PSS",
            ],
            "lrrrrrrrrrrrr",
            rows,
        )
    )
    print(
        "\n(peak RSS MB above idle, but the build child's: its own peak; 'all' is the tree's "
        "sum, sampled until the index build the upload caused ended; PSS: the same with each "
        "resident page counted once, sampled about once a second)"
    )
    print(
        f"large / baseline: {summary['size_ratio']}x the bytes, "
        f"{summary['upload_above_idle_ratio']}x the upload's memory above idle (server + parse), "
        f"{summary['above_idle_ratio']}x everything's, {summary['seconds_ratio']}x the time; "
        f"large upload: server + parse {large['upload_above_idle_mb']:,.0f} MB above idle "
        f"(goal < {GOAL_MB} MB: {verdict(GOAL_MB - large['upload_above_idle_mb'], 0)}), all "
        f"through the build {large['above_idle_mb']:,.0f} MB "
        f"({verdict(GOAL_MB - large['above_idle_mb'], 0)})"
    )
    path = dated_path("upload-memory", "cpu", now, args.out)
    write_json(
        path,
        {"command": command_line(), "date": now.isoformat(), "runs": runs, "summary": summary},
    )
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
