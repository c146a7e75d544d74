"""bench/embeddings.py: options, batches, the per-bucket loop, the tables and the output name."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest


@pytest.fixture
def emb(bench_module: Any) -> Any:
    return bench_module("embeddings")


@pytest.fixture
def driver(bench_module: Any) -> Any:
    return bench_module("lib.driver")


def test_options(emb: Any) -> None:
    args = emb.parse_args([])
    assert (args.clients, args.batch, args.mode, args.bucket_list) == (
        8,
        64,
        "both",
        ["short", "medium", "long"],
    )
    assert [emb.requests_for(b, args) for b in args.bucket_list] == [40, 16, 8]
    args = emb.parse_args(["--requests", "3", "--buckets", "long"])
    assert emb.requests_for("long", args) == 3
    for bad in (["--buckets", "huge"], ["--batch", "0"], ["--mode", "gpu"]):
        with pytest.raises(SystemExit):
            emb.parse_args(bad)


def test_server_specs_seed_first_then_the_appliance(emb: Any) -> None:
    seed, appliance = emb.server_specs("profile.yaml")
    assert (seed.name, seed.bare_list_body) == ("seed", True)
    assert seed.argv[1].endswith("seed_server.py") and len(seed.argv) == 2
    assert (appliance.name, appliance.bare_list_body) == ("appliance", False)
    assert appliance.argv[0] == sys.executable
    assert appliance.argv[-2:] == ["--config", "profile.yaml"]


def test_run_buckets_warms_up_then_keeps_every_vector_in_order(emb: Any, driver: Any) -> None:
    seen: list[list[str]] = []

    async def send(texts: list[str]) -> Any:
        seen.append(texts)
        vectors = np.zeros((len(texts), emb.DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            vectors[row, int(text) % emb.DIM] = 1.0
        return driver.Reply(vectors=vectors, tokens=len(texts), nbytes=0)

    corpus = {"short": [str(i) for i in range(100)], "long": [str(i) for i in range(200, 260)]}
    warm = emb.warmup_texts(corpus, ["short", "long"])
    assert warm["short"] == corpus["short"][-16:]
    work = {b: emb.make_batches(corpus[b], 3, 4) for b in ("short", "long")}
    runs, vectors = asyncio.run(emb.run_buckets(send, warm, work, 2, "x"))
    assert seen[:2] == [warm["short"], warm["long"]]  # the warm-up first, one request each
    assert len(seen) == 2 + 3 + 3
    assert runs["short"].requests == 3 and runs["short"].texts == 12
    expected = [int(t) % emb.DIM for batch in work["short"] for t in batch]
    assert list(np.argmax(vectors["short"], axis=1)) == expected


def test_run_buckets_refuses_vectors_of_the_wrong_size(emb: Any, driver: Any) -> None:
    async def send(texts: list[str]) -> Any:
        vectors = np.ones((len(texts), 3), dtype=np.float32)
        return driver.Reply(vectors=vectors, tokens=len(texts), nbytes=0)

    work = {"short": [["a", "b"]]}
    with pytest.raises(RuntimeError, match=r"x/short: expected 2 x 384 vectors"):
        asyncio.run(emb.run_buckets(send, {}, work, 1, "x"))


def test_tables(emb: Any) -> None:
    args = argparse.Namespace(clients=8, batch=64)
    http = {
        "servers": {
            "appliance": {"ready": {"embedding": {"device": "cpu", "dtype": "bfloat16"}}},
            "seed": {"buckets": {"short": {"requests": 40}}},
        },
        "summary": {
            "short": {
                "seed_texts_per_s": 110.0,
                "appliance_texts_per_s": 1234.5,
                "ratio": 11.22,
                "tokens_per_text": 20.3,
                "min_cosine_appliance_vs_seed": 0.999932,
            }
        },
    }
    assert emb.http_table(http, args).splitlines() == [
        "HTTP, 8 clients x 64 texts per request; appliance on cpu as bfloat16, base64 replies;"
        " seed fp32, JSON floats.",
        "",
        "| bucket | seed texts/s | appliance texts/s | ratio (appliance/seed) | requests"
        " | tokens/text | min cosine vs seed |",
        "|---|---:|---:|---:|---:|---:|---:|",
        "| short | 110.0 | 1,234.5 | 11.22x | 40 | 20.3 | 0.99993 |",
    ]
    inproc = {
        "engine": {"device": "cpu", "dtype": "bfloat16"},
        "summary": {
            "long": {
                "st_fp32_texts_per_s": 15.0,
                "engine_texts_per_s": 30.0,
                "ratio": 2.0,
                "tokens_per_text": 256.0,
                "min_cosine_engine_vs_st_fp32": 0.99991,
            }
        },
    }
    lines = emb.inprocess_table(inproc, args).splitlines()
    assert lines[0].startswith("In process, engine with 8 concurrent callers x 64 texts (cpu,")
    assert lines[2:] == [
        "| bucket | ST fp32 texts/s | engine texts/s | ratio (engine/ST) | tokens/text"
        " | min cosine vs ST fp32 |",
        "|---|---:|---:|---:|---:|---:|",
        "| long | 15.0 | 30.0 | 2.00x | 256.0 | 0.99991 |",
    ]


def test_output_path(
    emb: Any, bench_module: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(bench_module("lib.results"), "RESULTS", tmp_path)
    now = dt.datetime(2026, 11, 26, 4, 25, 29)
    args = argparse.Namespace(out=None)
    first = emb.output_path(args, {"cuda": False}, now)
    assert first == tmp_path / "embeddings-cpu-2026-11-26.json"
    first.write_text("{}")
    assert (
        emb.output_path(args, {"cuda": False}, now).name == "embeddings-cpu-2026-11-26-042529.json"
    )
    assert emb.output_path(args, {"cuda": True}, now).name == "embeddings-cuda-2026-11-26.json"
    args.out = "x.json"
    assert emb.output_path(args, {"cuda": False}, now) == Path("x.json")
