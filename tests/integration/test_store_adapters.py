"""The embedded store's persistence: reopen, SIGKILL, background HNSW builds, crash leftovers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rag_appliance.errors import ServiceUnavailable
from rag_appliance.store.base import Filter, Match, Point, Provenance, Range
from rag_appliance.store.qdrant_edge import QdrantEdgeStore

ROOT = Path(__file__).resolve().parents[2]
DIM = 16
PROV = Provenance(model="test-model", dimension=DIM, document_prefix="passage: ")


def points(start: int, stop: int, seed: int = 0) -> list[Point]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((stop, DIM)).astype(np.float32)
    return [
        Point(str(uuid.UUID(int=i + 1)), vectors[i], {"doc_id": f"d{i % 5}", "chunk_index": i})
        for i in range(start, stop)
    ]


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


def test_reopen_finds_data_and_provenance(tmp_path: Path) -> None:
    store = QdrantEdgeStore(tmp_path)
    created = store.create_collection("docs", PROV)
    data = points(0, 300)
    store.upsert("docs", data)
    store.set_payload("docs", Filter(must=(Match("doc_id", ("d1",)),)), {"committed": True})
    store.close()

    reopened = QdrantEdgeStore(tmp_path)
    try:
        assert reopened.get_collection("docs") == replace(created, points_count=300)
        assert reopened.create_collection("docs", PROV).created_at == created.created_at
        assert reopened.count("docs", Filter(must=(Match("committed", (True,)),))) == 60
        assert reopened.search("docs", data[123].vector, top_k=1)[0].id == data[123].id
    finally:
        reopened.close()


def test_one_process_per_store(tmp_path: Path) -> None:
    store = QdrantEdgeStore(tmp_path)
    try:
        with pytest.raises(ServiceUnavailable):
            QdrantEdgeStore(tmp_path)
    finally:
        store.close()
    QdrantEdgeStore(tmp_path).close()  # released by close


def test_acknowledged_upserts_survive_sigkill(tmp_path: Path) -> None:
    child = run_child(
        """
        import sys
        from pathlib import Path
        from tests.integration.test_store_adapters import PROV, points
        from rag_appliance.store.qdrant_edge import QdrantEdgeStore

        store = QdrantEdgeStore(Path(sys.argv[1]))
        store.create_collection("docs", PROV)
        for start in range(0, 1000, 100):
            store.upsert("docs", points(start, start + 100))
        print("done", flush=True)
        import time; time.sleep(60)
        """,
        str(tmp_path),
    )
    kill_after_done(child)

    store = QdrantEdgeStore(tmp_path)
    try:
        assert store.get_collection("docs").provenance == PROV
        assert store.count("docs") == 1000
        data = points(0, 1000)
        assert store.search("docs", data[999].vector, top_k=1)[0].id == data[999].id
    finally:
        store.close()


def test_background_hnsw_build_keeps_concurrent_writes(tmp_path: Path) -> None:
    store = QdrantEdgeStore(tmp_path, hnsw_threshold=500)
    try:
        store.create_collection("docs", PROV)
        first = points(0, 1500)
        store.upsert("docs", first[:600])  # past the threshold: a build starts
        # Writes while the child process builds; they must reach the new shard.
        store.upsert("docs", first[600:])
        store.delete("docs", Filter(must=(Match("doc_id", ("d0",)), Range("chunk_index", lt=100))))
        store.set_payload("docs", Filter(must=(Match("doc_id", ("d1",)),)), {"committed": True})
        assert store.wait_for_index("docs", timeout=60)

        assert store.indexed_points("docs") >= 600
        assert store.count("docs") == 1480
        assert store.count("docs", Filter(must=(Match("committed", (True,)),))) == 300
        assert store.search("docs", first[1234].vector, top_k=1)[0].id == first[1234].id
        assert store.search("docs", first[10].vector, top_k=1)[0].id != first[10].id  # deleted
        live = json.loads((tmp_path / "collections/docs/collection.json").read_text())["shard"]
        assert sorted(p.name for p in (tmp_path / "collections/docs").iterdir()) == sorted(
            ["collection.json", live]
        )
    finally:
        store.close()

    reopened = QdrantEdgeStore(tmp_path, hnsw_threshold=500)
    try:
        assert reopened.count("docs") == 1480
        assert reopened.indexed_points("docs") >= 600
    finally:
        reopened.close()


def test_sigkill_during_an_index_build_loses_nothing(tmp_path: Path) -> None:
    child = run_child(
        """
        import sys
        from pathlib import Path
        from tests.integration.test_store_adapters import PROV, points
        from rag_appliance.store.qdrant_edge import QdrantEdgeStore

        store = QdrantEdgeStore(Path(sys.argv[1]), hnsw_threshold=300)
        store.create_collection("docs", PROV)
        for start in range(0, 3000, 100):
            store.upsert("docs", points(start, start + 100))
        print("done", flush=True)
        import time; time.sleep(60)
        """,
        str(tmp_path),
    )
    kill_after_done(child)

    store = QdrantEdgeStore(tmp_path, hnsw_threshold=0)
    try:
        assert store.count("docs") == 3000
        live = json.loads((tmp_path / "collections/docs/collection.json").read_text())["shard"]
        assert [p.name for p in (tmp_path / "collections/docs").iterdir() if p.is_dir()] == [live]
    finally:
        store.close()


def test_hnsw_threshold_zero_never_builds_and_a_new_threshold_applies(tmp_path: Path) -> None:
    store = QdrantEdgeStore(tmp_path, hnsw_threshold=0)
    try:
        store.create_collection("docs", PROV)
        store.upsert("docs", points(0, 400))
        assert store.wait_for_index("docs", timeout=0)
        assert store.indexed_points("docs") == 0
    finally:
        store.close()

    store = QdrantEdgeStore(tmp_path, hnsw_threshold=300)
    try:
        assert store.count("docs") == 400  # opening the shard starts the build
        assert store.wait_for_index("docs", timeout=60)
        assert store.indexed_points("docs") == 400
    finally:
        store.close()


def test_crash_leftovers_are_removed_on_open(tmp_path: Path) -> None:
    store = QdrantEdgeStore(tmp_path)
    store.create_collection("docs", PROV)
    store.upsert("docs", points(0, 10))
    store.close()
    collections = tmp_path / "collections"
    (collections / "docs" / "shard-0123abcd").mkdir()  # an interrupted index build
    (collections / "docs" / "collection.json.tmp").write_text("{")
    (collections / "half-made").mkdir()  # a create that died before collection.json
    (collections / ".trash-1234").mkdir()  # a delete that died before rmtree

    store = QdrantEdgeStore(tmp_path)
    try:
        assert [c.name for c in store.list_collections()] == ["docs"]
        assert store.count("docs") == 10
        assert sorted(p.name for p in collections.iterdir()) == ["docs"]
        assert len(list((collections / "docs").iterdir())) == 2
        store.create_collection("half-made", PROV)  # the name is usable
    finally:
        store.close()
