"""bench/gpu_report.py: the ratios, the acceptance verdicts, the table and the output name."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def report(bench_module: Any) -> Any:
    return bench_module("gpu_report")


def row(report: Any, appliance: float, ceiling: float, seed: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "mean_tokens": 20.3,
        "appliance": {"texts_per_s": appliance},
        "ceiling": {"texts_per_s": ceiling, "batch": 512, "seq": 20},
    }
    if seed is not None:
        out["seed"] = {"texts_per_s": seed}
    report.add_ratios(out)
    return out


def test_add_ratios(report: Any) -> None:
    r = row(report, 14_000, 21_000, 411)
    assert r["ratios"] == {
        "appliance/ceiling": 0.667,
        "engine/ceiling": None,  # no engine measured
        "appliance/engine": None,
        "appliance/seed": 34.063,
    }


def test_acceptance_pass_fail_and_skip(report: Any) -> None:
    models = {
        "bge-large": {
            "buckets": {
                "short": row(report, 14_000, 21_000, 411),  # 0.67 of the ceiling, 34x the seed
                "medium": row(report, 4_000, 5_900, None),  # 0.68: below 0.75; no seed measured
                "long": row(report, 1_300, 1_411, 100),  # 0.92
            }
        }
    }
    checks = {(c["bucket"], c["metric"]): c for c in report.acceptance(models)}
    assert {key: c["status"] for key, c in checks.items()} == {
        ("long", "appliance/ceiling"): "PASS",
        ("medium", "appliance/ceiling"): "FAIL",
        ("short", "appliance/ceiling"): "PASS",
        ("short", "appliance/seed"): "PASS",
        ("medium", "appliance/seed"): "SKIP",
    }
    line = report.acceptance_line(checks[("medium", "appliance/ceiling")])
    assert line == (
        "FAIL bge-large medium: appliance/ceiling 0.68 >= 0.75 (4,000 vs 5,900 texts/s)"
    )
    assert report.acceptance_line(checks[("medium", "appliance/seed")]) == (
        "SKIP bge-large medium: appliance/seed >= 25: not measured"
    )
    # Without the BGE-large model every bar is skipped.
    assert {c["status"] for c in report.acceptance({"minilm": models["bge-large"]})} == {"SKIP"}


def test_report_table_rows(report: Any) -> None:
    short = row(report, 14_000, 21_000, 411)
    short["appliance"].update(texts_per_pass=256.0, fill=0.71)
    short["min_cosine"] = {"appliance_vs_seed": 0.99998}
    bare: dict[str, Any] = {"mean_tokens": 507.0}
    report.add_ratios(bare)
    table = report.report_table({"bge-large": {"buckets": {"short": short, "long": bare}}})
    lines = table.splitlines()
    assert lines[0].startswith("| model | bucket | tokens/text | (a) ceiling | (b) engine |")
    assert lines[1] == "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    assert lines[2] == (
        "| bge-large | short | 20.3 | 21,000 (B512xS20) | - | 14,000 | 411 | 0.67x | -"
        " | 34.1x | 256, 0.71 | 1.0000 |"
    )
    assert lines[3] == "| bge-large | long | 507.0 | - | - | - | - | - | - | - | - | - |"


def test_summary_line(report: Any) -> None:
    models = {"bge-large": {"buckets": {"short": row(report, 10, 20, 5)}}}
    result = {
        "models": models,
        "acceptance": report.acceptance(models),
        "machine": {"device_name": "NVIDIA H200"},
        "date": "2026-11-26T10:00:00+00:00",
        "params": {"smoke": False},
        "errors": ["x"],
        "seconds": 300.0,
    }
    summary = json.loads(report.summary_line(result))
    assert summary["bench"] == "gpu" and summary["device"] == "NVIDIA H200"
    assert summary["texts_per_s"]["bge-large"]["short"] == {
        "tokens": 20.3,
        "ceiling": 20.0,
        "engine": None,
        "appliance": 10.0,
        "seed": 5.0,
        "appliance/ceiling": 0.5,
        "engine/ceiling": None,
        "appliance/engine": None,
        "appliance/seed": 2.0,
    }
    assert summary["acceptance"]["short appliance/ceiling >= 0.6"] == "FAIL"
    assert summary["acceptance"]["long appliance/ceiling >= 0.85"] == "SKIP"
    assert summary["errors"] == 1


def test_output_path(
    report: Any, bench_module: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(bench_module("lib.results"), "RESULTS", tmp_path)
    now = dt.datetime(2026, 11, 26, 9, 30, 0)
    args = argparse.Namespace(out=None, smoke=False)
    assert report.output_path(args, "NVIDIA H200", now).name == "gpu-nvidia-h200-2026-11-26.json"
    args.smoke = True
    assert report.output_path(args, "cpu", now).name == "gpu-cpu-smoke-2026-11-26.json"
    args.out = str(tmp_path / "mine.json")
    assert report.output_path(args, "cpu", now) == tmp_path / "mine.json"
