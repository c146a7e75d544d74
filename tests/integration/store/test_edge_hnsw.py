"""Background HNSW builds (real qdrant-edge, real child processes): no write is lost."""

from __future__ import annotations

import json
from pathlib import Path

from rag_appliance.store.base import Filter, Match, Range
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.integration.store.edge_data import (
    PROV,
    kill_after_done,
    points,
    run_child,
    sparse_ids,
)


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
        # The BM25 vectors went through the copy, the build and the replay too.
        assert sparse_ids(store, "docs", "item1234") == [first[1234].id]  # written meanwhile
        assert sparse_ids(store, "docs", "item10") == []  # deleted meanwhile
        assert sparse_ids(store, "docs", "item500") == [first[500].id]  # in the snapshot
        kept = [i for i in range(1500) if i % 7 == 3 and not (i % 5 == 0 and i < 100)]
        assert len(sparse_ids(store, "docs", "topic3", top_k=1500)) == len(kept)
        hybrid = store.search(
            "docs", first[1234].vector, 1, mode="hybrid", query_text="item1234 topic2"
        )
        assert hybrid[0].id == first[1234].id
        meta = json.loads((tmp_path / "collections/docs/collection.json").read_text())
        assert meta["indexed_points"] == store.indexed_points("docs")
        live = meta["shard"]
        assert sorted(p.name for p in (tmp_path / "collections/docs").iterdir()) == sorted(
            ["collection.json", live]
        )
    finally:
        store.close()

    reopened = QdrantEdgeStore(tmp_path, hnsw_threshold=500)
    try:
        assert reopened.count("docs") == 1480
        assert reopened.indexed_points("docs") >= 600
        assert sparse_ids(reopened, "docs", "item1234") == [first[1234].id]
    finally:
        reopened.close()


def test_sigkill_during_an_index_build_loses_nothing(tmp_path: Path) -> None:
    child = run_child(
        """
        import sys
        from pathlib import Path
        from tests.integration.store.edge_data import PROV, points
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
        late = points(2999, 3000)[0]
        assert sparse_ids(store, "docs", "item2999") == [late.id]
        assert len(sparse_ids(store, "docs", "topic0", top_k=3000)) == len(range(0, 3000, 7))
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
        # Opening the shard starts the build: Qdrant's own indexed count, which includes the 400
        # sparse vectors, would say that nothing is left to index.
        assert store.count("docs") == 400
        assert store.wait_for_index("docs", timeout=60)
        assert store.indexed_points("docs") == 400
        assert sparse_ids(store, "docs", "item399") == [points(399, 400)[0].id]
    finally:
        store.close()


def test_builds_wait_for_an_ingest_write_then_index_everything(tmp_path: Path) -> None:
    store = QdrantEdgeStore(tmp_path, hnsw_threshold=200)
    try:
        store.create_collection("docs", PROV)
        release = store.hold_builds("docs")
        data = points(0, 1100)
        for start in range(0, 900, 100):  # 4.5 thresholds past the threshold: held
            store.upsert("docs", data[start : start + 100])
        assert store.wait_for_index("docs", timeout=0)  # no build was started
        assert store.indexed_points("docs") == 0
        release()
        release()  # a second release is a no-op, not a second writer gone
        assert store.wait_for_index("docs", timeout=60)
        assert store.indexed_points("docs") == 900  # one build, of everything written

        # Two writers: builds wait for both, and a hold cannot put off a build forever.
        first, second = store.hold_builds("docs"), store.hold_builds("docs")
        store.upsert("docs", data[900:1100])
        first()
        assert store.wait_for_index("docs", timeout=0)
        assert store.indexed_points("docs") == 900
        store.upsert("docs", points(1100, 2100))  # 1,200 unindexed: past 5x the threshold
        assert store.wait_for_index("docs", timeout=60)
        assert store.indexed_points("docs") >= 2000
        second()
        assert store.count("docs") == 2100
    finally:
        store.close()
