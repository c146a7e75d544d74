"""bench/bulk.py's pure parts: the files it writes, the stage clock, the /metrics sums."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any


def test_write_files_mixes_formats_and_stops_at_the_count(
    bench_module: Callable[[str], Any], tmp_path: Path
) -> None:
    bulk = bench_module("bulk")
    assert bulk.write_files(tmp_path, 40) == 40
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) == 40 and {p.suffix for p in files} == {".md"}  # pystdlib comes first
    more = tmp_path / "more"
    assert bulk.write_files(more, 1290) == 1290
    assert {p.suffix for p in more.rglob("*.*")} == {".md", ".txt", ".html"}
    page = next(more.rglob("*.html")).read_text("utf-8")
    assert page.startswith("<html><head><title>") and "<p>" in page


def test_stage_clock_adds_busy_seconds(bench_module: Callable[[str], Any]) -> None:
    clock = bench_module("bulk").StageClock()

    async def slow() -> int:
        await asyncio.sleep(0.02)
        return 1

    assert asyncio.run(clock.wrap_async("embed", slow)()) == 1
    assert clock.wrap_sync("chunk", lambda x: x + 1)(1) == 2
    assert clock.seconds["embed"] >= 0.02 and clock.seconds["chunk"] < 0.02


def test_metric_sum_adds_every_label_set(bench_module: Callable[[str], Any]) -> None:
    text = (
        "# HELP rag_embedding_forward_seconds x\n"
        'rag_embedding_forward_seconds_bucket{le="1"} 3\n'
        'rag_embedding_forward_seconds_sum{model="a"} 1.5\n'
        'rag_embedding_forward_seconds_sum{model="b"} 0.25\n'
        "rag_embedding_forward_seconds_count 3\n"
    )
    assert bench_module("bulk")._metric_sum(text, "rag_embedding_forward_seconds") == 1.75
