"""bench/lib/results.py: result file names, JSON, ratios, tables and PASS/FAIL verdicts."""

from __future__ import annotations

import datetime as dt
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

NOW = dt.datetime(2026, 11, 26, 14, 5, 9)


@pytest.fixture
def results(bench_module: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    module = bench_module("lib.results")
    monkeypatch.setattr(module, "RESULTS", tmp_path / "results")
    return module


def test_results_live_in_bench_results(bench_module: Any) -> None:
    module = bench_module("lib.results")
    assert Path(__file__).resolve().parents[4] / "bench" / "results" == module.RESULTS


def test_dated_path_never_overwrites_unless_told(results: Any, tmp_path: Path) -> None:
    first = results.dated_path("gpu", "nvidia-h200", NOW)
    assert first == tmp_path / "results" / "gpu-nvidia-h200-2026-11-26.json"
    results.write_json(first, {"run": 1})
    second = results.dated_path("gpu", "nvidia-h200", NOW)
    assert second.name == "gpu-nvidia-h200-2026-11-26-140509.json"
    assert results.dated_path("index", "cpu", NOW, keep_earlier=False).name == (
        "index-cpu-2026-11-26.json"
    )
    results.write_json(tmp_path / "results" / "index-cpu-2026-11-26.json", {})
    assert results.dated_path("index", "cpu", NOW, keep_earlier=False).name == (
        "index-cpu-2026-11-26.json"
    )
    assert results.dated_path("gpu", "x", NOW, out="elsewhere.json") == Path("elsewhere.json")


def test_write_json_makes_the_folder(results: Any, tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "r.json"
    results.write_json(path, {"x": [1, 2]})
    text = path.read_text()
    assert json.loads(text) == {"x": [1, 2]}
    assert text.endswith("}\n") and "\n  " in text  # indented, one final newline


def test_slug(results: Any) -> None:
    assert results.slug("NVIDIA H200") == "nvidia-h200"
    assert results.slug("  Tesla T4 (PCIe)!") == "tesla-t4-pcie"
    assert results.slug("???") == "unknown"


def test_command_line_is_the_process_argv(results: Any) -> None:
    assert results.command_line() == shlex.join(sys.orig_argv)


def test_ratio_and_fmt(results: Any) -> None:
    assert results.ratio(3.0, 2.0) == 1.5
    assert results.ratio(2.0, 3.0) == 0.667
    assert results.ratio(2.0, 3.0, 2) == 0.67
    assert results.ratio(None, 2.0) is None
    assert results.ratio(1.0, None) is None
    assert results.ratio(1.0, 0.0) is None
    assert results.fmt(None) == "-"
    assert results.fmt(12345.6) == "12,346"
    assert results.fmt(0.6789, ".2f", "x") == "0.68x"


def test_markdown_table(results: Any) -> None:
    table = results.markdown_table(("bucket", "texts/s"), "lr", [["short", "1.0"], ["long", "2"]])
    assert table.splitlines() == [
        "| bucket | texts/s |",
        "|---|---:|",
        "| short | 1.0 |",
        "| long | 2 |",
    ]
    with pytest.raises(ValueError, match="align"):
        results.markdown_table(("a", "b"), "l", [])
    with pytest.raises(ValueError, match="1 cells for 2 columns"):
        results.markdown_table(("a", "b"), "ll", [["x"]])


def test_bars_and_verdicts(results: Any) -> None:
    bar = results.Bar("long", "ceiling", 0.85)
    assert bar.metric == "appliance/ceiling"
    assert results.verdict(0.85, bar.at_least) == "PASS"  # reaching the bar is enough
    assert results.verdict(0.849, bar.at_least) == "FAIL"
    assert results.verdict(None, bar.at_least) == "SKIP"


def test_one_line(results: Any) -> None:
    assert results.one_line("only") == "only"
    assert results.one_line("first\n\n  middle\nlast  \n") == "first ... last"
    assert results.one_line("") == ""
    assert len(results.one_line("x" * 1000)) == 600
