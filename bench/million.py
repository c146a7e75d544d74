"""The embedded store at a million chunks: upserts, the HNSW build, search latency and recall,
RSS and disk, with int8 quantization off and on, in one process.

    python bench/million.py [--points 1000000] [--queries 200] [--modes none,int8]

Store level (QdrantEdgeStore, no model): 384-d unit vectors (low-rank plus noise, as in
bench/stores.py, so that nearest neighbours exist; `--vectors random` for uniform ones), each
with a payload of doc_id, chunk_index, committed and a `team` keyword (one of ten, not
payload-indexed, like a user's metadata) and a random 12-term text whose BM25 vector the store
computes (Zipf over 20k synthetic terms). The points are upserted once with HNSW off, 1000 a
call; the shard is then copied once per mode and reopened with `--hnsw-threshold` and that
quantization, which starts the background build (timed until wait_for_index returns). Then, on
the same queries: dense exact (the engine's exact scan, through the shard), dense ANN without a
filter, with the commit filter the appliance adds, with a team filter (10% of points), and
hybrid (dense + BM25, RRF in the engine) with the commit filter; and the dense ANN search with
quantization ignored (Qdrant's `ignore`: the same graph walked with the original float32 vectors,
so on an int8 store it is the search side of "without quantization" without a second build).
recall@10 is against numpy's exact top 10 (cosine; for the team filter, over that team's
points). RSS: this process's growth over what it held before opening the store (the bench's own
arrays excluded), its peak, and the build child's peak.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe
from lib.machine import cpu_name
from lib.results import command_line, dated_path, markdown_table, ratio, write_json
from search_modes import COMMITTED, PROV, log, percentiles
from stores import Memory, dir_bytes, exact_top, make_vectors

from rag_appliance.store.base import Filter, Match, Point
from rag_appliance.store.edge_config import EdgeTuning
from rag_appliance.store.qdrant_edge import QdrantEdgeStore

NAME = "million"
TOP_K = 10
TEAMS = 10
VOCABULARY = 20_000
TERMS_PER_CHUNK = 12
TEAM = Filter(must=(Match("team", ("team-0",)),))
EXACT = qe.SearchParams(exact=True)


def text(rng: np.random.Generator, n: int) -> list[str]:
    """n random texts of TERMS_PER_CHUNK Zipf-distributed synthetic terms."""
    ids = (rng.zipf(1.3, size=(n, TERMS_PER_CHUNK)) - 1) % VOCABULARY
    return [" ".join(f"t{i}" for i in row) for row in ids.tolist()]


def points(vectors: np.ndarray, start: int, texts: list[str]) -> list[Point]:
    """The chunks start.. of `vectors`, with their payloads and texts."""
    out = []
    for k, words in enumerate(texts):
        i = start + k
        payload = {
            "doc_id": f"doc-{i // 8}",
            "chunk_index": i % 8,
            "committed": True,
            "team": f"team-{i % TEAMS}",
        }
        out.append(Point(str(uuid.UUID(int=i + 1)), vectors[i], payload, words))
    return out


def upsert(store: QdrantEdgeStore, vectors: np.ndarray, batch: int) -> dict[str, Any]:
    """Every point into a new collection, `batch` a call: the rate."""
    store.create_collection(NAME, PROV)
    rng = np.random.default_rng(3)
    began = time.perf_counter()
    for start in range(0, len(vectors), batch):
        n = min(batch, len(vectors) - start)
        store.upsert(NAME, points(vectors, start, text(rng, n)))
        if start // batch % 100 == 0:
            log(f"  upserted {start + n:,}/{len(vectors):,}")
    seconds = time.perf_counter() - began
    return {"seconds": round(seconds, 1), "chunks_per_s": round(len(vectors) / seconds, 1)}


def timed(
    queries: int, run: Callable[[int], list[int]], truth: list[set[int]] | None
) -> dict[str, Any]:
    """Latency of `run(q)` over the queries (after 5 warm-ups) and its recall@10 vs `truth`."""
    for q in range(min(5, queries)):
        run(q)
    latencies, recalls, hits = [], [], 0
    for q in range(queries):
        began = time.perf_counter()
        found = run(q)
        latencies.append((time.perf_counter() - began) * 1000)
        hits += len(found)
        if truth is not None:
            recalls.append(len(set(found) & truth[q]) / TOP_K)
    figures: dict[str, Any] = {"queries": queries, "latency_ms": percentiles(latencies)}
    figures["mean_hits"] = round(hits / max(1, queries), 2)
    if truth is not None:
        figures["recall_at_10"] = round(float(np.mean(recalls)), 4)
    return figures


def ids(hits: list[Any]) -> list[int]:
    """Point numbers (0-based) of hits."""
    return [int(uuid.UUID(str(h.id))) - 1 for h in hits]


def searches(
    store: QdrantEdgeStore, args: argparse.Namespace, qv: np.ndarray, qt: list[str], truth: Any
) -> dict[str, Any]:
    """Every search kind on the open store (see the module docstring)."""
    full, team = truth

    def exact(q: int) -> list[int]:
        request = qe.QueryRequest(limit=TOP_K, query=qe.Query.Nearest(qv[q].tolist()), params=EXACT)
        # The shard itself: the store has no exact mode once HNSW is built (a bench-only reach).
        with store._shard(NAME) as (_, shard):
            return ids(shard.query(request))

    ef = store._index.tuning.search_ef(store.count(NAME), TOP_K)
    # The same graph searched with the original vectors only (Qdrant's `ignore` quantization):
    # the search side of "without quantization" on a store built with it (a bench-only reach).
    unquantized = qe.SearchParams(
        hnsw_ef=ef, quantization=qe.QuantizationSearchParams(ignore=True, rescore=False)
    )

    def full_precision(q: int) -> list[int]:
        query = qe.Query.Nearest(qv[q].tolist())
        request = qe.QueryRequest(limit=TOP_K, query=query, params=unquantized)
        with store._shard(NAME) as (_, shard):
            return ids(shard.query(request))

    def dense(flt: Filter | None) -> Callable[[int], list[int]]:
        return lambda q: ids(store.search(NAME, qv[q], TOP_K, flt))

    def hybrid(q: int) -> list[int]:
        return ids(store.search(NAME, qv[q], TOP_K, COMMITTED, mode="hybrid", query_text=qt[q]))

    n, exact_n = args.queries, min(args.queries, args.exact_queries)
    out = {
        "exact": timed(exact_n, exact, full),
        "ann": timed(n, dense(None), full),
        "ann_unquantized": timed(n, full_precision, full),
        "ann_committed": timed(n, dense(COMMITTED), full),
        "ann_team": timed(n, dense(TEAM), team),
        "hybrid": timed(n, hybrid, None),
    }
    for kind, figures in out.items():
        log(f"  {kind}: {figures}")
    return out


def run_mode(
    mode: str, base: Path, tmp: Path, args: argparse.Namespace, data: dict[str, Any]
) -> dict[str, Any]:
    """Copy the upserted store, build its index with `mode`'s quantization, search it."""
    path = tmp / f"store-{mode}"
    shutil.copytree(base, path)
    figures = measure(path, mode, args, data, lambda store: None)
    if args.keep and mode == args.modes.split(",")[-1]:
        shutil.move(path, args.keep)
    shutil.rmtree(path, ignore_errors=True)
    return figures


def grow(store: QdrantEdgeStore, vectors: np.ndarray, first: int, batch: int) -> None:
    """Upsert the points `first`.. of `vectors` (new ones, so that a build starts)."""
    rng = np.random.default_rng(5)
    for start in range(first, len(vectors), batch):
        store.upsert(NAME, points(vectors, start, text(rng, min(batch, len(vectors) - start))))


def truths(vectors: np.ndarray, qv: np.ndarray) -> tuple[list[set[int]], list[set[int]]]:
    """Each query's exact top 10 over every point, and over team-0's points."""
    log(f"exact top-{TOP_K} of {len(qv)} queries over {len(vectors):,} points (numpy)")
    members = np.flatnonzero(np.arange(len(vectors)) % TEAMS == 0)
    team = [{int(members[i]) for i in top} for top in exact_top(vectors[members], qv, TOP_K)]
    return exact_top(vectors, qv, TOP_K), team


def measure(
    path: Path,
    mode: str,
    args: argparse.Namespace,
    data: dict[str, Any],
    before_build: Callable[[QdrantEdgeStore], None],
) -> dict[str, Any]:
    """Open the store at `path` with `mode`'s quantization, build its index, search it."""
    memory = Memory()
    tuning = EdgeTuning(quantization=mode)
    with memory:
        before = memory.now()["process"]
        store = QdrantEdgeStore(path, hnsw_threshold=args.hnsw_threshold, tuning=tuning)
        try:
            began = time.perf_counter()
            before_build(store)
            store.count(NAME)  # opening the shard starts the build
            store.wait_for_index(NAME)
            build = {
                "seconds": round(time.perf_counter() - began, 1),
                "indexed_points": store.indexed_points(NAME),
            }
            log(f"{mode}: built {build}")
            figures: dict[str, Any] = {"build": build}
            figures |= searches(store, args, data["qv"], data["qt"], data["truth"])
            loaded = memory.now()["process"] - before
        finally:
            store.close()
    figures["rss_mib"] = {
        "store": round(loaded / 1024),
        "peak": round((memory.peak["process"] - before) / 1024),
        "build_child_peak": round(memory.peak["children"] / 1024),
    }
    figures["disk_mib"] = round(dir_bytes(path) / 2**20)
    return figures


def requantize(args: argparse.Namespace, data: dict[str, Any], result: dict[str, Any]) -> None:
    """int8 on a store already built without it, as `quantization: auto` meets a collection
    crossing the threshold: its searches as built, then `--hnsw-threshold` new points, whose
    build quantizes every segment, and its searches after (recall over all the points)."""
    path = Path(args.requantize)
    result["requantized"] = str(path)
    result["modes"]["none"] = measure(path, "none", args, data, lambda store: None)
    n = len(data["vectors"])
    extra = make_vectors(args.hnsw_threshold, args.vectors, seed=5)
    vectors = np.concatenate([data["vectors"], extra])
    grown = data | {"truth": truths(vectors, data["qv"])}
    result["requantized_points"] = len(vectors)

    def more(store: QdrantEdgeStore) -> None:
        grow(store, vectors, n, args.batch)

    result["modes"]["int8"] = measure(path, "int8", args, grown, more)


def run(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Upsert once, then each mode on its own copy; the raw results, written as they come."""
    n = args.points
    vectors = make_vectors(n, args.vectors, seed=1)
    qv = make_vectors(args.queries, args.vectors, seed=2)
    qt = [" ".join(t.split()[:3]) for t in text(np.random.default_rng(4), args.queries)]
    data = {"qv": qv, "qt": qt, "truth": truths(vectors, qv), "vectors": vectors}
    machine = {"cpu": cpu_name(), "qdrant-edge-py": importlib.metadata.version("qdrant-edge-py")}
    result: dict[str, Any] = {
        "command": command_line(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "load_avg_start": list(os.getloadavg()),
        "points": n,
        "queries": args.queries,
        "vectors": args.vectors,
        "hnsw_threshold": args.hnsw_threshold,
        "tuning": EdgeTuning().__dict__,
        "modes": {},
    }
    if args.requantize:
        requantize(args, data, result)
        return result
    tmp = Path(tempfile.mkdtemp(prefix="million-", dir=args.tmp))
    try:
        base = tmp / "upserted"
        memory = Memory()
        with memory:
            before = memory.now()["process"]
            store = QdrantEdgeStore(base, hnsw_threshold=0)
            try:
                result["upsert"] = upsert(store, vectors, args.batch)
            finally:
                store.close()
        result["upsert"]["rss_peak_mib"] = round((memory.peak["process"] - before) / 1024)
        result["upsert"]["disk_mib"] = round(dir_bytes(base) / 2**20)
        log(f"upsert: {result['upsert']}")
        write_json(out, result)
        for mode in args.modes.split(","):
            result["modes"][mode] = run_mode(mode, base, tmp, args, data)
            write_json(out, result)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def report(r: dict[str, Any]) -> str:
    """The markdown table: one column per mode, and int8 over none where both ran."""
    modes = r["modes"]
    names = list(modes)

    def row(label: str, get: Callable[[dict[str, Any]], Any]) -> list[str]:
        values = [get(modes[m]) for m in names]
        both = "none" in modes and "int8" in modes
        x = ratio(get(modes["int8"]), get(modes["none"])) if both else None
        return [label, *(str(v) for v in values), "" if x is None else f"{x}"]

    def lat(kind: str, pct: str) -> Callable[[dict[str, Any]], Any]:
        return lambda f: f[kind]["latency_ms"][pct]

    rows = [row("HNSW build s", lambda f: f["build"]["seconds"])]
    for kind, label in (
        ("exact", "dense exact"),
        ("ann", "dense ANN"),
        ("ann_unquantized", "dense ANN, quantization ignored"),
        ("ann_committed", "dense ANN + commit filter"),
        ("ann_team", "dense ANN + team filter (10%)"),
        ("hybrid", "hybrid RRF + commit filter"),
    ):
        rows.append(row(f"{label} p50 ms", lat(kind, "p50")))
        rows.append(row(f"{label} p95 ms", lat(kind, "p95")))

    def recall(kind: str) -> Callable[[dict[str, Any]], Any]:
        return lambda f: f[kind]["recall_at_10"]

    for kind in ("exact", "ann", "ann_unquantized", "ann_team"):
        rows.append(row(f"recall@10 {kind}", recall(kind)))
    rows.append(row("store RSS MiB", lambda f: f["rss_mib"]["store"]))
    rows.append(row("peak RSS MiB (+ build child)", lambda f: f["rss_mib"]["peak"]))
    rows.append(row("build child peak RSS MiB", lambda f: f["rss_mib"]["build_child_peak"]))
    rows.append(row("disk MiB", lambda f: f["disk_mib"]))
    head = f"{r['points']:,} points x 384-d ({r['vectors']}), {r['queries']} queries"
    if "upsert" in r:
        up = r["upsert"]
        head += (
            f"; upserts {up['chunks_per_s']:,.0f} chunks/s ({up['seconds']} s), disk "
            f"{up['disk_mib']} MiB before the build"
        )
    if "requantized" in r:
        head += "; int8: the built store re-quantized (see --requantize)"
    head += "\n\n"
    table = markdown_table(["", *names, "int8 / none"], "l" + "r" * (len(names) + 1), rows)
    return head + table


def main() -> None:
    """Parse flags, run, write bench/results/million-<date>.json, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--exact-queries", type=int, default=50, help="exact scans are slow")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--vectors", choices=("lowrank", "random"), default="lowrank")
    parser.add_argument("--modes", default="none,int8", help="quantization modes, in order")
    parser.add_argument("--hnsw-threshold", type=int, default=20_000)
    parser.add_argument("--tmp", default=None, help="folder for the stores (default: TMPDIR)")
    parser.add_argument("--keep", default=None, help="move the last mode's store here")
    parser.add_argument(
        "--requantize",
        default=None,
        metavar="STORE",
        help="a store this bench built without quantization (same --points): search it, then "
        "quantize it to int8 at its next build and search again (modified in place)",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = dated_path("million", "cpu", dt.datetime.now(), args.out)
    result = run(args, out)
    result["load_avg_end"] = list(os.getloadavg())
    write_json(out, result)
    print(report(result))
    log(f"raw results: {out}")


if __name__ == "__main__":
    main()
