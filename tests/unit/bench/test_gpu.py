"""bench/gpu.py: its options, the tokenizer argument, and a whole --smoke run on the CPU."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
BENCH = ROOT / "bench"
MODELS = ("bge-large", "minilm")
BUCKETS = ("short", "medium", "long")

slow = pytest.mark.skipif(
    bool(os.environ.get("RAG_SKIP_SLOW")), reason="RAG_SKIP_SLOW is set (a ~20-60 s subprocess)"
)


@pytest.fixture
def gpu(bench_module: Any) -> Any:
    return bench_module("gpu")


def test_defaults_depend_on_smoke_and_the_command_line_wins(gpu: Any) -> None:
    full = gpu.parse_args([])
    assert (full.clients, full.batch, full.seconds, full.seed_requests) == (8, 256, 8.0, 8)
    assert full.client_procs is None  # decided by the device
    assert full.model_list == ["bge-large", "minilm"]
    assert full.part_list == ["ceiling", "engine", "appliance", "seed"]
    assert full.tokenizer is None
    smoke = gpu.parse_args(["--smoke", "--batch", "16"])
    assert (smoke.clients, smoke.batch, smoke.client_procs) == (2, 16, 1)
    argv = ["--models", "bge-large", "--parts", "ceiling,appliance", "--tokenizer", "tok"]
    argv += ["--appliance-env", "RAG_A=1", "--appliance-env", "RAG_B=x=y"]
    args = gpu.parse_args(argv)
    assert args.model_list == ["bge-large"] and args.part_list == ["ceiling", "appliance"]
    assert args.tokenizer == Path("tok")
    assert args.extra_env == {"RAG_A": "1", "RAG_B": "x=y"}


@pytest.mark.parametrize(
    "argv",
    [
        ["--models", "gpt"],
        ["--buckets", "huge"],
        ["--parts", "ceiling,magic"],
        ["--clients", "0"],
        ["--appliance-env", "NOEQUALS"],
    ],
)
def test_bad_options_are_refused(gpu: Any, argv: list[str], capsys: Any) -> None:
    with pytest.raises(SystemExit) as exc:
        gpu.parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_a_tokenizer_folder_without_one_stops_the_run_first(
    gpu: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    with pytest.raises(SystemExit, match=r"--tokenizer .*: no vocab.txt or tokenizer.json"):
        gpu.main(["--device", "cpu", "--smoke", "--tokenizer", str(tmp_path)])


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
