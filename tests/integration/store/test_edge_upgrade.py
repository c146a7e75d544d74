"""enable_sparse on the embedded store (real qdrant-edge, real child processes): the HNSW index
is kept, concurrent writes are kept, and a SIGKILL at any step leaves the dense-only collection."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from rag_appliance.store.base import Bm25Config, Filter, Match, Point
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.integration.store.edge_data import PROV, kill_after_done, points, run_child, sparse_ids


def chunks(start: int, stop: int) -> list[Point]:
    """edge_data's points with their text in the payload too, as the pipeline stores chunks."""
    return [
        Point(p.id, p.vector, {**p.payload, "text": p.text_for_sparse}, p.text_for_sparse)
        for p in points(start, stop)
    ]


def dirs(path: Path) -> list[str]:
    return sorted(p.name for p in (path / "collections/docs").iterdir())


def test_enable_sparse_keeps_the_hnsw_index_and_concurrent_writes(tmp_path: Path) -> None:
    store = QdrantEdgeStore(tmp_path, hnsw_threshold=500)
    try:
        store.create_collection("docs", PROV, bm25=None)
        store.upsert("docs", chunks(0, 1500))
        assert store.wait_for_index("docs", timeout=60)
        assert store.indexed_points("docs") >= 1000
        late = chunks(1500, 1600)
        errors: list[BaseException] = []

        def writer() -> None:
            try:  # writes and searches while the upgrade copies and optimizes
                for start in range(0, 100, 10):
                    store.upsert("docs", late[start : start + 10])
                    assert store.search("docs", late[start].vector, 1)[0].id == late[start].id
                store.delete("docs", Filter(must=(Match("chunk_index", (3, 4)),)))
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        thread = threading.Thread(target=writer)
        seen: list[int] = []

        def progress(n: int) -> None:
            if not seen:
                thread.start()
            seen.append(n)

        info = store.enable_sparse("docs", progress=progress)
        thread.join(60)
        assert not errors, errors
        assert info.bm25 == Bm25Config()
        assert sum(seen) >= 1500
        assert store.count("docs") == 1598
        # The new shard was optimized before the swap: the collection kept its HNSW index.
        assert store.indexed_points("docs") >= 1000
        assert sparse_ids(store, "docs", "item1234") == [chunks(1234, 1235)[0].id]
        assert sparse_ids(store, "docs", "item1599") == [late[-1].id]  # written meanwhile
        assert sparse_ids(store, "docs", "item3") == []  # deleted meanwhile
        assert store.search("docs", late[50].vector, 1)[0].id == late[50].id
        live = json.loads((tmp_path / "collections/docs/collection.json").read_text())["shard"]
        assert dirs(tmp_path) == sorted(["collection.json", live])
    finally:
        store.close()

    reopened = QdrantEdgeStore(tmp_path, hnsw_threshold=500)
    try:
        assert reopened.get_collection("docs").bm25 == Bm25Config()
        assert reopened.count("docs") == 1598
        assert sparse_ids(reopened, "docs", "item1599") == [late[-1].id]
    finally:
        reopened.close()


# The child makes a dense-only collection, then upgrades it and is SIGKILLed at `{where}`.
_CRASH = """
import sys, time
from pathlib import Path
from tests.integration.store.test_edge_upgrade import chunks
from tests.integration.store.edge_data import PROV
from rag_appliance.store import edge_layout
from rag_appliance.store.qdrant_edge import QdrantEdgeStore

def stop(*_):
    print("done", flush=True)
    time.sleep(60)

store = QdrantEdgeStore(Path(sys.argv[1]), hnsw_threshold=int(sys.argv[2]))
store.create_collection("docs", PROV, bm25=None)
store.upsert("docs", chunks(0, 1200))
store.wait_for_index("docs")
if sys.argv[3] == "commit":  # after the copy (and the optimize), before collection.json
    edge_layout.EdgeCollection.write_meta = stop
    store.enable_sparse("docs")
else:  # in the middle of the copy
    store.enable_sparse("docs", progress=stop)
"""


def _crash_then_recover(tmp_path: Path, threshold: int, where: str) -> None:
    kill_after_done(run_child(_CRASH, str(tmp_path), str(threshold), where))
    before = dirs(tmp_path)
    assert len(before) > 2  # the half-made shards are there...
    store = QdrantEdgeStore(tmp_path, hnsw_threshold=threshold)
    try:
        live = json.loads((tmp_path / "collections/docs/collection.json").read_text())["shard"]
        assert dirs(tmp_path) == sorted(["collection.json", live])  # ...and removed on open
        info = store.get_collection("docs")
        assert (info.bm25, info.points_count) == (None, 1200)
        target = chunks(777, 778)[0]
        assert store.search("docs", target.vector, 1)[0].id == target.id
        # The upgrade can simply run again.
        assert store.enable_sparse("docs").bm25 == Bm25Config()
        assert sparse_ids(store, "docs", "item777") == [target.id]
        assert store.count("docs") == 1200
    finally:
        store.close()


def test_sigkill_during_the_copy_leaves_the_dense_only_collection(tmp_path: Path) -> None:
    _crash_then_recover(tmp_path, 0, "copy")


def test_sigkill_before_the_commit_leaves_the_dense_only_collection(tmp_path: Path) -> None:
    _crash_then_recover(tmp_path, 500, "commit")
