"""Data and child processes shared by the embedded store's integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np

from rag_appliance.store.base import Point, Provenance, VectorStore

ROOT = Path(__file__).resolve().parents[3]
DIM = 16
PROV = Provenance(model="test-model", dimension=DIM, document_prefix="passage: ")


def points(start: int, stop: int, seed: int = 0) -> list[Point]:
    """Points start..stop-1: doc d{i%5}, chunk i, and a text whose term item{i} is theirs alone."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((stop, DIM)).astype(np.float32)
    return [
        Point(
            str(uuid.UUID(int=i + 1)),
            vectors[i],
            {"doc_id": f"d{i % 5}", "chunk_index": i},
            text_for_sparse=f"item{i} about topic{i % 7}",
        )
        for i in range(start, stop)
    ]


def sparse_ids(store: VectorStore, name: str, text: str, top_k: int = 5) -> list[str]:
    """The ids a BM25 search for `text` finds."""
    return [h.id for h in store.search(name, None, top_k, mode="sparse", query_text=text)]


def run_child(script: str, *args: str) -> subprocess.Popen[str]:
    """A Python child running `script` with this checkout importable."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def kill_after_done(child: subprocess.Popen[str]) -> None:
    """SIGKILL the child as soon as it prints 'done'."""
    assert child.stdout is not None
    line = child.stdout.readline()
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)
    assert line.strip() == "done"
    assert child.returncode == -signal.SIGKILL
