"""`rag-appliance upgrade-sparse` as a user runs it, on a collection indexed dense-only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rag_appliance.store.base import Bm25Config, Filter, Match
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests import docs_factory

ROOT = Path(__file__).resolve().parents[2]


def cli(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = os.environ | {"HF_HUB_OFFLINE": "1", "RAG_DATA_DIR": str(data_dir)} | env
    return subprocess.run(
        [sys.executable, "-m", "rag_appliance", *args],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_upgrade_sparse_adds_bm25_to_a_dense_only_collection(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    docs_factory.make_txt(
        folder, "The orchard's pear trees bloom in the third week of April.", "a.txt"
    )
    docs_factory.make_txt(folder, "Invoices are paid within fourteen days of receipt.", "b.txt")
    data = tmp_path / "data"
    # Indexed as before BM25 existed: the collection has dense vectors only.
    dense_only = {"RAG_INGEST__BM25__ENABLED": "false"}
    indexed = cli(data, "index", str(folder), "--collection", "kb", **dense_only)
    assert indexed.returncode == 0, indexed.stderr
    store = QdrantEdgeStore(data / "qdrant")
    try:
        assert store.get_collection("kb").bm25 is None
        chunks = store.count("kb")
    finally:
        store.close()

    result = cli(data, "upgrade-sparse", "--collection", "kb")
    assert result.returncode == 0, result.stderr
    assert f"BM25 sparse vectors (english) for {chunks} chunks" in result.stdout
    assert f"{chunks}/{chunks}" in result.stderr  # the progress bar, over chunks
    again = cli(data, "upgrade-sparse", "--collection", "kb")
    assert again.returncode == 0 and "already has BM25 sparse vectors" in again.stdout
    missing = cli(data, "upgrade-sparse", "--collection", "nope")
    assert missing.returncode == 1 and "nope" in missing.stderr

    store = QdrantEdgeStore(data / "qdrant")
    try:
        info = store.get_collection("kb")
        assert (info.bm25, info.points_count) == (Bm25Config(), chunks)
        committed = Filter(must=(Match("committed", (True,)),))
        hits = store.search("kb", None, 3, committed, mode="sparse", query_text="invoice payment")
        assert [h.payload["doc_id"] for h in hits] == ["b.txt"]
    finally:
        store.close()
    # Indexing into it again changes nothing: the upgrade left the content hashes alone.
    rerun = cli(data, "index", str(folder), "--collection", "kb")
    assert "0 indexed, 2 unchanged, 0 failed" in rerun.stdout, rerun.stdout + rerun.stderr
