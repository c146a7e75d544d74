"""bench/gpu.py: its helpers, its multi-process HTTP load, and a whole --smoke run on the CPU."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import live_server, make_settings
from tests.fakes import FAKE_PROFILE, FakeEncoder

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
MODELS = ("bge-large", "minilm")
BUCKETS = ("short", "medium", "long")

slow = pytest.mark.skipif(
    bool(os.environ.get("RAG_SKIP_SLOW")), reason="RAG_SKIP_SLOW is set (a ~20-60 s subprocess)"
)


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> Any:
    """bench/gpu.py as a module (it imports its siblings corpus.py and embeddings.py)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("gpu")


def test_batch_at_wraps_around_the_bucket(gpu: Any) -> None:
    texts = ["a", "b", "c", "d", "e"]
    assert gpu.batch_at(texts, 0, 2) == ["a", "b"]
    assert gpu.batch_at(texts, 2, 2) == ["e", "a"]
    assert gpu.batch_at(texts, -1, 2) == ["d", "e"]


def test_split_job_shares_clients_and_requests(gpu: Any) -> None:
    plan = gpu.Plan(seconds=5.0, min_requests=8, max_requests=10)
    job = gpu.LoadJob("x", "http://h/v1/embeddings", False, ["t"], 4, 7, plan, 8, True)
    jobs = gpu.split_job(job, 3)
    assert [j.clients for j in jobs] == [3, 2, 2]
    assert [(j.index, j.stride) for j in jobs] == [(0, 3), (1, 3), (2, 3)]
    assert all(j.plan == gpu.Plan(5.0, 3, 4) for j in jobs)
    assert len(gpu.split_job(job, 99)) == 7  # never more processes than clients


def test_timed_loop_keeps_to_its_plan(gpu: Any) -> None:
    seen: list[list[str]] = []

    async def send(texts: list[str]) -> Any:
        seen.append(texts)
        await asyncio.sleep(0.001)
        return gpu.Reply(vectors=np.ones((len(texts), 2)), tokens=3 * len(texts), nbytes=10)

    plan = gpu.Plan(seconds=0.0, min_requests=5, max_requests=5)
    started, samples = asyncio.run(gpu.timed_loop(send, ["a", "b", "c"], 2, 3, plan))
    run = gpu.summarize(started, samples)
    assert (run.requests, run.texts) == (5, 10)
    assert (run.tokens_per_text, run.bytes_per_response) == (3.0, 10)
    assert sorted(map(tuple, seen)) == sorted(
        tuple(gpu.batch_at(["a", "b", "c"], i, 2)) for i in range(5)
    )


def test_acceptance_pass_fail_and_skip(gpu: Any) -> None:
    def row(appliance: float, ceiling: float, seed: float | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "appliance": {"texts_per_s": appliance},
            "ceiling": {"texts_per_s": ceiling},
        }
        if seed is not None:
            out["seed"] = {"texts_per_s": seed}
        gpu.add_ratios(out)
        return out

    models = {
        "bge-large": {
            "buckets": {
                "short": row(14_000, 21_000, 411),  # 0.67 of the ceiling, 34x the seed
                "medium": row(4_000, 5_900, None),  # 0.68: below 0.75; no seed measured
                "long": row(1_300, 1_411, 100),  # 0.92
            }
        }
    }
    checks = {(c["bucket"], c["metric"]): c for c in gpu.acceptance(models)}
    status = {key: c["status"] for key, c in checks.items()}
    assert status == {
        ("long", "appliance/ceiling"): "PASS",
        ("medium", "appliance/ceiling"): "FAIL",
        ("short", "appliance/ceiling"): "PASS",
        ("short", "appliance/seed"): "PASS",
        ("medium", "appliance/seed"): "SKIP",
    }
    line = gpu.acceptance_line(checks[("medium", "appliance/ceiling")])
    assert line == (
        "FAIL bge-large medium: appliance/ceiling 0.68 >= 0.75 (4,000 vs 5,900 texts/s)"
    )
    assert gpu.acceptance_line(checks[("medium", "appliance/seed")]).startswith("SKIP ")


def test_load_processes_drive_a_live_appliance(gpu: Any) -> None:
    """Two spawned load processes against the real app (fake model), started at a barrier."""
    settings = make_settings(server={"ui": False}, generation={"enabled": False})
    texts = [f"text number {i}" for i in range(50)]
    with live_server(settings, FakeEncoder()) as url:
        job = gpu.LoadJob(
            name="appliance",
            url=f"{url}/v1/embeddings",
            bare_list=False,
            texts=texts,
            batch=4,
            clients=4,
            plan=gpu.Plan(seconds=0.2, min_requests=8, max_requests=10_000),
            dim=FAKE_PROFILE.dimension,
            warm=True,
        )
        run = gpu.run_load(job, procs=2)
    assert run.requests >= 8
    assert run.texts == 4 * run.requests
    assert run.texts_per_s > 0
    assert run.bytes_per_response > 0


@slow
@pytest.mark.timeout(240)
def test_smoke_run_prints_every_row_ratio_and_verdict(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    argv = [sys.executable, str(BENCH / "gpu.py"), "--device", "cpu", "--smoke"]
    argv += ["--workdir", str(tmp_path / "models"), "--out", str(out)]
    proc = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=200, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Device: cpu (cpu)") and "torch " in lines[0]
    assert lines[1].startswith("Command: `") and "--smoke" in lines[1]

    # The markdown table: one row per model and bucket, every figure and ratio present.
    rows = [line for line in lines if re.match(r"\| (bge-large|minilm) \| \w+ \|", line)]
    assert [tuple(r.split(" | ")[:2]) for r in rows] == [
        (f"| {m}", b) for m in MODELS for b in BUCKETS
    ]
    for r in rows:
        cells = [c.strip() for c in r.strip("|").split("|")]
        assert len(cells) == 12, r
        assert "-" not in cells[3:10], r  # ceiling, engine, appliance, seed and three ratios
        assert re.fullmatch(r"[\d,]+ \(B\d+xS\d+\)", cells[3]), r
        assert all(re.fullmatch(r"[\d.]+x", c) for c in cells[7:10]), r

    # One verdict per acceptance bar.
    verdicts = [line for line in lines if re.match(r"(PASS|FAIL|SKIP) ", line)]
    assert len(verdicts) == 5
    for line in verdicts:
        assert re.fullmatch(
            r"(PASS|FAIL) bge-large (short|medium|long): appliance/(ceiling|seed)"
            r" \d+\.\d\d >= [\d.]+ \([\d,]+ vs [\d,]+ texts/s\)",
            line,
        ), line

    # The JSON line and the raw file agree and hold every part of every row.
    summary = json.loads(next(line for line in lines if line.startswith('{"bench":"gpu"')))
    assert summary["smoke"] is True and summary["device"] == "cpu"
    for m in MODELS:
        for b in BUCKETS:
            cell = summary["texts_per_s"][m][b]
            for key in ("ceiling", "engine", "appliance", "seed"):
                assert cell[key] > 0, (m, b, key)
            for key in ("appliance/ceiling", "engine/ceiling", "appliance/seed"):
                assert cell[key] is not None, (m, b, key)
    assert set(summary["acceptance"].values()) <= {"PASS", "FAIL"}
    raw = json.loads(out.read_text())
    assert raw["machine"]["device_name"] == "cpu"
    assert set(raw["models"]) == set(MODELS)
    row = raw["models"]["bge-large"]["buckets"]["short"]
    assert row["appliance"]["texts_per_pass"] > 0
    assert row["min_cosine"]["appliance_vs_seed"] > 0.99  # same pooling, same weights
    assert f"Raw results: {out}" in proc.stdout
