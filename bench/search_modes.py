"""Search latency by mode (dense, BM25, hybrid) and what BM25 costs when indexing and upgrading.

    python bench/search_modes.py [--points 100000] [--queries 500] [--upgrade-points 20000]

Store level, embedded (qdrant-edge) in this process: random unit vectors stand in for the
embeddings (384-d, as all-MiniLM-L6-v2's), and the chunk texts BM25 indexes are 120-word windows
of real English from the benchmark corpus (bench/corpus.py: CPython docstrings). Every part runs
in the same process, one after the other:

1. indexing: the same points upserted into a dense-only collection and into one with BM25,
   batch by batch in turn (256 points per call, as the pipeline's `embed_batch`), HNSW builds
   off, so the two differ by BM25 alone (tokenising the text, storing the sparse vector);
2. search: the BM25 collection, reopened with HNSW on and its index built (wait_for_index);
   each query runs once in every mode, in a rotating order, with the commit filter the
   appliance adds to every search; p50/p95 per mode and their ratios to dense;
3. upgrade: enable_sparse on a dense-only collection of `--upgrade-points` chunks (HNSW built),
   timed, while this thread runs a dense search on it every `--upgrade-search-interval-ms`
   (light serving traffic) and records how long each took.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from corpus import load_corpus
from lib.machine import cpu_info
from lib.results import command_line, dated_path, markdown_table, ratio, write_json

from rag_appliance.store import bm25
from rag_appliance.store.base import Bm25Config, Filter, Match, Point, Provenance
from rag_appliance.store.qdrant_edge import QdrantEdgeStore

DIM = 384
PROV = Provenance(model="bench-random", dimension=DIM)
COMMITTED = Filter(must=(Match("committed", (True,)),))
WORDS_PER_CHUNK = 120
# Every mode the store serves, as (label, search() keywords).
MODES: list[tuple[str, dict[str, Any]]] = [
    ("dense", {"mode": "dense"}),
    ("sparse", {"mode": "sparse"}),
    ("hybrid-rrf", {"mode": "hybrid", "fusion": "rrf"}),
    ("hybrid-dbsf", {"mode": "hybrid", "fusion": "dbsf"}),
    ("hybrid-weighted", {"mode": "hybrid", "fusion": "weighted"}),
]


def log(message: str) -> None:
    """Progress on stderr, timestamped."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def make_points(n: int, seed: int = 1) -> list[Point]:
    """n chunks: a random unit vector, a corpus text window, eight chunks per document."""
    long_texts = [t.split() for t in load_corpus()["long"]]
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    points = []
    for i in range(n):
        words = long_texts[int(rng.integers(len(long_texts)))]
        start = int(rng.integers(max(1, len(words) - WORDS_PER_CHUNK)))
        text = " ".join(words[start : start + WORDS_PER_CHUNK])
        payload = {"doc_id": f"doc-{i // 8}", "chunk_index": i % 8, "text": text, "committed": True}
        points.append(Point(str(uuid.UUID(int=i + 1)), vectors[i], payload, text))
    return points


def make_queries(n: int, seed: int = 2) -> list[tuple[np.ndarray, str]]:
    """n queries: a random unit vector and six consecutive words of a short corpus text."""
    shorts = load_corpus()["short"]
    rng = np.random.default_rng(seed)
    queries = []
    for _ in range(n):
        vector = rng.standard_normal(DIM).astype(np.float32)
        words = shorts[int(rng.integers(len(shorts)))].split()
        queries.append((vector / np.linalg.norm(vector), " ".join(words[:6])))
    return queries


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95 and the mean of latencies in ms."""
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "p50": round(statistics.median(ordered), 3),
        "p95": round(p95, 3),
        "mean": round(statistics.fmean(ordered), 3),
    }


def measure_indexing(store: QdrantEdgeStore, points: list[Point], batch: int) -> dict[str, Any]:
    """Upsert the points into a dense-only and a BM25 collection, batch by batch in turn."""
    store.create_collection("dense", PROV, bm25=None)
    store.create_collection("sparse", PROV)
    seconds = {"dense": 0.0, "sparse": 0.0}
    for start in range(0, len(points), batch):
        part = points[start : start + batch]
        for name in ("dense", "sparse") if (start // batch) % 2 else ("sparse", "dense"):
            began = time.perf_counter()
            store.upsert(name, part)
            seconds[name] += time.perf_counter() - began
        if (start // batch) % 40 == 0:
            log(f"indexed {start + len(part)}/{len(points)} into both collections")
    sample = [p.text_for_sparse for p in points[:5000]]
    began = time.perf_counter()
    for text in sample:
        bm25.document_vector(Bm25Config(), text)
    tokenise_s = time.perf_counter() - began
    dense_rate = len(points) / seconds["dense"]
    sparse_rate = len(points) / seconds["sparse"]
    return {
        "points": len(points),
        "batch": batch,
        "dense_only_s": round(seconds["dense"], 3),
        "with_bm25_s": round(seconds["sparse"], 3),
        "dense_only_chunks_per_s": round(dense_rate, 1),
        "with_bm25_chunks_per_s": round(sparse_rate, 1),
        "with_bm25/dense_only": ratio(sparse_rate, dense_rate),
        "bm25_vectors_per_s": round(len(sample) / tokenise_s, 1),
    }


def measure_search(
    store: QdrantEdgeStore, name: str, queries: list[tuple[np.ndarray, str]], top_k: int, warm: int
) -> dict[str, Any]:
    """Latency of every mode over the same queries, in a rotating order."""
    latencies: dict[str, list[float]] = {label: [] for label, _ in MODES}
    hits: dict[str, list[int]] = {label: [] for label, _ in MODES}
    for q, (vector, text) in enumerate(queries):
        shift = q % len(MODES)
        for label, kwargs in MODES[shift:] + MODES[:shift]:
            began = time.perf_counter()
            found = store.search(name, vector, top_k, COMMITTED, query_text=text, **kwargs)
            elapsed = (time.perf_counter() - began) * 1000
            if q >= warm:
                latencies[label].append(elapsed)
                hits[label].append(len(found))
    stats = {label: percentiles(values) for label, values in latencies.items()}
    dense = stats["dense"]
    return {
        "queries": len(queries) - warm,
        "warm_up_queries": warm,
        "top_k": top_k,
        "latency_ms": stats,
        "ratio_to_dense": {
            label: {"p50": ratio(s["p50"], dense["p50"]), "p95": ratio(s["p95"], dense["p95"])}
            for label, s in stats.items()
        },
        "mean_hits": {label: round(statistics.fmean(h), 2) for label, h in hits.items()},
    }


def measure_upgrade(
    store: QdrantEdgeStore, points: list[Point], top_k: int, interval_s: float
) -> dict[str, Any]:
    """enable_sparse on a dense-only collection while this thread searches it now and then."""
    store.create_collection("upgrade", PROV, bm25=None)
    for start in range(0, len(points), 256):
        store.upsert("upgrade", points[start : start + 256])
    store.wait_for_index("upgrade")
    log(f"upgrading a dense-only collection of {len(points)} points")
    copied_at: list[float] = []
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if done >= len(points):
            copied_at.append(time.perf_counter())

    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            store.enable_sparse("upgrade", progress=progress)
        except BaseException as exc:  # reported below
            errors.append(exc)

    worker = threading.Thread(target=upgrade)
    waits: list[float] = []
    began = time.perf_counter()
    worker.start()
    while worker.is_alive():
        query = points[len(waits) % len(points)].vector
        t = time.perf_counter()
        store.search("upgrade", query, top_k, COMMITTED)
        waits.append((time.perf_counter() - t) * 1000)
        time.sleep(interval_s)
    total = time.perf_counter() - began
    if errors:
        raise errors[0]
    copy_s = (copied_at[0] if copied_at else began) - began
    return {
        "points": len(points),
        "search_interval_ms": round(interval_s * 1000, 1),
        "seconds": round(total, 2),
        "copy_s": round(copy_s, 2),
        "optimize_and_swap_s": round(total - copy_s, 2),
        "indexed_points_after": store.indexed_points("upgrade"),
        "searches_meanwhile": len(waits),
        "search_ms_meanwhile": percentiles(waits) | {"max": round(max(waits, default=0.0), 3)},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every part, in one temporary store folder; the figures."""
    log(f"building {args.points} points and {args.queries + args.warm_up} queries")
    points = make_points(args.points)
    queries = make_queries(args.queries + args.warm_up)
    tmp = Path(tempfile.mkdtemp(prefix="search-modes-", dir=args.tmp))
    try:
        store = QdrantEdgeStore(tmp, hnsw_threshold=0)
        try:
            indexing = measure_indexing(store, points, args.batch)
        finally:
            store.close()
        log(f"indexing: {indexing}")
        store = QdrantEdgeStore(tmp, hnsw_threshold=args.hnsw_threshold)
        try:
            began = time.perf_counter()
            store.count("sparse")  # opening the shard starts its HNSW build
            store.wait_for_index("sparse")
            build_s = time.perf_counter() - began
            log(f"HNSW built in {build_s:.1f} s: {store.indexed_points('sparse')} points")
            search = measure_search(store, "sparse", queries, args.top_k, args.warm_up)
            search["hnsw_build_s"] = round(build_s, 1)
            search["indexed_points"] = store.indexed_points("sparse")
            log(f"search: {search['latency_ms']}")
            upgrade = measure_upgrade(
                store,
                points[: args.upgrade_points],
                args.top_k,
                args.upgrade_search_interval_ms / 1000,
            )
            log(f"upgrade: {upgrade}")
        finally:
            store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "points": args.points,
        "dimension": DIM,
        "words_per_chunk": WORDS_PER_CHUNK,
        "hnsw_threshold": args.hnsw_threshold,
        "indexing": indexing,
        "search": search,
        "upgrade": upgrade,
    }


def report(figures: dict[str, Any]) -> str:
    """The markdown tables of a run."""
    search, indexing, upgrade = figures["search"], figures["indexing"], figures["upgrade"]
    rows = [
        [
            label,
            f"{s['p50']:.2f}",
            f"{s['p95']:.2f}",
            f"{search['ratio_to_dense'][label]['p50']:.2f}",
            f"{search['ratio_to_dense'][label]['p95']:.2f}",
        ]
        for label, s in search["latency_ms"].items()
    ]
    lines = [
        f"{figures['points']:,} chunks x {figures['dimension']} dims, HNSW over "
        f"{search['indexed_points']:,} (built in {search['hnsw_build_s']} s), "
        f"{search['queries']} queries, top_k {search['top_k']}, commit filter",
        "",
        markdown_table(["mode", "p50 ms", "p95 ms", "p50 / dense", "p95 / dense"], "lrrrr", rows),
        "",
        markdown_table(
            ["upsert, 256 per call", "seconds", "chunks/s"],
            "lrr",
            [
                [
                    "dense only",
                    f"{indexing['dense_only_s']:.1f}",
                    f"{indexing['dense_only_chunks_per_s']:,.0f}",
                ],
                [
                    "dense + BM25",
                    f"{indexing['with_bm25_s']:.1f}",
                    f"{indexing['with_bm25_chunks_per_s']:,.0f}",
                ],
            ],
        ),
        f"with BM25 / dense only: {indexing['with_bm25/dense_only']:.2f}; BM25 vectors alone: "
        f"{indexing['bm25_vectors_per_s']:,.0f}/s",
        "",
        f"upgrade of {upgrade['points']:,} dense-only chunks: {upgrade['seconds']} s "
        f"(copy {upgrade['copy_s']} s, HNSW build and swap {upgrade['optimize_and_swap_s']} s); "
        f"{upgrade['searches_meanwhile']} dense searches meanwhile (one every "
        f"{upgrade['search_interval_ms']} ms), p50 "
        f"{upgrade['search_ms_meanwhile']['p50']:.2f} ms, max "
        f"{upgrade['search_ms_meanwhile']['max']:.1f} ms",
    ]
    return "\n".join(lines)


def main() -> None:
    """Parse flags, run, print the tables and save the raw figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000, help="chunks in the collection")
    parser.add_argument("--queries", type=int, default=500, help="timed queries per mode")
    parser.add_argument("--warm-up", type=int, default=20, help="untimed queries first")
    parser.add_argument("--top-k", type=int, default=10, help="hits per search")
    parser.add_argument("--batch", type=int, default=256, help="points per upsert call")
    parser.add_argument(
        "--upgrade-points", type=int, default=20_000, help="chunks in the upgraded collection"
    )
    parser.add_argument(
        "--upgrade-search-interval-ms",
        type=float,
        default=20.0,
        help="pause between the dense searches made during the upgrade",
    )
    parser.add_argument(
        "--hnsw-threshold", type=int, default=20_000, help="the store's HNSW threshold"
    )
    parser.add_argument("--tmp", default=None, help="folder for the temporary store")
    parser.add_argument("--out", default=None, help="raw JSON path (default: bench/results/)")
    args = parser.parse_args()
    figures = run(args)
    machine = cpu_info() | {"qdrant_edge": importlib.metadata.version("qdrant-edge-py")}
    command = command_line()
    print(f"Machine: {machine['cpu']} ({machine['usable_cores']} usable cores), `{command}`")
    print(report(figures))
    out = dated_path("search-modes", "cpu", dt.datetime.now(), args.out)
    write_json(out, {"command": command, "machine": machine, **figures})
    print(f"raw: {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")


if __name__ == "__main__":
    main()
