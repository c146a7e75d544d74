"""`rag-appliance index | search | eval` as a user runs them, including a SIGKILL mid-index."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag_appliance.collections.service import COMMITTED, doc_filter
from rag_appliance.store.base import Filter
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests import docs_factory

ROOT = Path(__file__).resolve().parents[2]
DATASET = ROOT / "tests" / "data" / "beir-mini"


def cli(data_dir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "RAG_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "rag_appliance", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_index_folder_search_and_failure_exit_code(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    docs_factory.make_txt(
        folder, "The orchard's pear trees bloom in the third week of April.", "a.txt"
    )
    docs_factory.make_pdf(folder / "sub", "Invoices are paid within fourteen days.", "b.pdf")
    docs_factory.make_corrupt_pdf(folder, "broken.pdf")
    (folder / "ignored.bin").write_bytes(b"\x00\x01")
    result = cli(tmp_path / "data", "index", str(folder), "--collection", "kb")
    assert result.returncode == 1, result.stderr
    assert "2 indexed, 0 unchanged, 1 failed" in result.stdout
    assert "broken.pdf" in result.stderr
    # Ids are paths relative to the folder given: the same folder again changes nothing.
    again = cli(tmp_path / "data", "index", str(folder), "--collection", "kb")
    assert "0 indexed, 2 unchanged, 1 failed" in again.stdout
    single = cli(tmp_path / "data", "index", str(folder / "a.txt"), "--collection", "kb")
    assert single.returncode == 0, single.stderr
    assert "0 indexed, 1 unchanged, 0 failed" in single.stdout
    found = cli(tmp_path / "data", "search", "when do the pear trees flower", "--collection", "kb")
    assert found.returncode == 0, found.stderr
    assert found.stdout.splitlines()[0].split()[2].startswith("a.txt#0")
    missing = cli(tmp_path / "data", "search", "x", "--collection", "nope")
    assert missing.returncode == 1 and "nope" in missing.stderr


def _check_consistent(data_dir: Path, expected_chunks: dict[str, int]) -> set[str]:
    """Every document is fully committed or absent from search; returns the present ones."""
    store = QdrantEdgeStore(data_dir / "qdrant")
    present = set()
    try:
        for doc_id, chunks in expected_chunks.items():
            committed = store.count("crash", Filter(must=(*doc_filter(doc_id).must, COMMITTED)))
            assert committed in (0, chunks), (doc_id, committed, chunks)
            if committed:
                present.add(doc_id)
    finally:
        store.close()
    return present


def test_sigkill_mid_index_then_rerun_converges(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    paragraph = "Section {i}.{j} explains how component {i} handles request batch {j}. " * 6
    for i in range(96):
        text = "\n\n".join(paragraph.format(i=i, j=j) for j in range(6))
        (folder).mkdir(exist_ok=True)
        (folder / f"doc{i:03}.txt").write_text(text)
    env = os.environ | {"HF_HUB_OFFLINE": "1", "RAG_DATA_DIR": str(tmp_path / "data")}
    cmd = [sys.executable, "-m", "rag_appliance", "index", str(folder), "--collection", "crash"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 240
    seen = ""
    while "32/96" not in seen:  # killed after the first step, in the middle of the next
        assert proc.poll() is None and time.monotonic() < deadline, seen[-2000:]
        seen += proc.stderr.read(1)
    time.sleep(0.7)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    # Chunk counts per document from a clean run elsewhere, for the consistency check.
    reference = cli(tmp_path / "ref", "index", str(folder), "--collection", "crash")
    assert reference.returncode == 0, reference.stderr
    ref_store = QdrantEdgeStore(tmp_path / "ref" / "qdrant")
    expected = {
        f"doc{i:03}.txt": ref_store.count("crash", doc_filter(f"doc{i:03}.txt")) for i in range(96)
    }
    ref_store.close()
    present = _check_consistent(tmp_path / "data", expected)
    assert 0 < len(present) < 96, len(present)
    rerun = cli(tmp_path / "data", "index", str(folder), "--collection", "crash")
    assert rerun.returncode == 0, rerun.stderr
    assert f"{96 - len(present)} indexed, {len(present)} unchanged, 0 failed" in rerun.stdout
    assert _check_consistent(tmp_path / "data", expected) == set(expected)
    store = QdrantEdgeStore(tmp_path / "data" / "qdrant")
    try:
        assert store.count("crash") == sum(expected.values())  # no orphans, no duplicates
    finally:
        store.close()


def test_eval_compares_every_mode_and_matches_exact_search(tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    result = cli(
        tmp_path / "data",
        "eval",
        "--dataset",
        str(DATASET),
        "--collection",
        "beir",
        "--exact",
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "ndcg@10" in result.stdout and "recall@10" in result.stdout and "mrr@10" in result.stdout
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(rows) == {
        "dense",
        "sparse (BM25)",
        "hybrid rrf",
        "hybrid dbsf",
        "hybrid weighted",
        "exact dense (numpy)",
    }
    ours, exact = rows["dense"], rows["exact dense (numpy)"]
    for name in ("ndcg@10", "recall@10", "mrr@10"):
        assert ours[name] == pytest.approx(exact[name], abs=0.005), name
        assert 0.5 < ours[name] <= 1.0
    written = json.loads(out.read_text())
    assert written["rows"] == rows and written["documents"] > 0 and written["k"] == 10
    # The modes really differ: BM25 alone ranks differently from the dense model here.
    assert rows["sparse (BM25)"]["ndcg@10"] != rows["dense"]["ndcg@10"]
