"""bench/search_modes.py on a small store: every part runs and reports what the docs quote."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]


def test_a_small_run_reports_every_figure(
    bench_module: Callable[[str], Any], tmp_path: Path
) -> None:
    search_modes = bench_module("search_modes")
    args = argparse.Namespace(
        points=2000,
        queries=20,
        warm_up=2,
        top_k=5,
        batch=256,
        upgrade_points=600,
        upgrade_search_interval_ms=5.0,
        hnsw_threshold=500,
        tmp=str(tmp_path),
    )
    figures = search_modes.run(args)

    search = figures["search"]
    labels = {"dense", "sparse", "hybrid-rrf", "hybrid-dbsf", "hybrid-weighted"}
    assert set(search["latency_ms"]) == labels == set(search["ratio_to_dense"])
    for stats in search["latency_ms"].values():
        assert 0 < stats["p50"] <= stats["p95"]
    assert search["ratio_to_dense"]["dense"] == {"p50": 1.0, "p95": 1.0}
    assert search["queries"] == 20 and search["indexed_points"] == 2000
    # Every query has hits in every mode: its words come from the corpus the chunks are cut from.
    assert search["mean_hits"]["dense"] == 5 and search["mean_hits"]["hybrid-rrf"] == 5
    assert search["mean_hits"]["sparse"] > 0

    indexing = figures["indexing"]
    assert indexing["points"] == 2000
    assert indexing["dense_only_chunks_per_s"] > 0 and indexing["with_bm25_chunks_per_s"] > 0
    assert indexing["with_bm25/dense_only"] > 0

    upgrade = figures["upgrade"]
    assert upgrade["points"] == 600 and upgrade["indexed_points_after"] == 600
    assert upgrade["searches_meanwhile"] > 0
    assert 0 < upgrade["copy_s"] <= upgrade["seconds"]

    table = search_modes.report(figures)
    assert "| hybrid-weighted |" in table and "dense + BM25" in table
    assert list(tmp_path.iterdir()) == []  # the temporary store is gone


def test_help_runs_from_the_repository_root() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/search_modes.py", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--upgrade-points" in proc.stdout
