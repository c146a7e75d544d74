"""The embedded store (real qdrant-edge): what was written is there after a reopen or SIGKILL."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rag_appliance.store.base import Bm25Config, Filter, Match
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.integration.store.edge_data import (
    PROV,
    kill_after_done,
    points,
    run_child,
    sparse_ids,
)


def test_reopen_finds_data_and_provenance(tmp_path: Path) -> None:
    store = QdrantEdgeStore(tmp_path)
    config = Bm25Config(language="french", stopwords=False)
    created = store.create_collection("docs", PROV, bm25=config)
    store.create_collection("dense", PROV, bm25=None)
    data = points(0, 300)
    store.upsert("docs", data)
    store.set_payload("docs", Filter(must=(Match("doc_id", ("d1",)),)), {"committed": True})
    store.close()

    reopened = QdrantEdgeStore(tmp_path)
    try:
        assert reopened.get_collection("docs") == replace(created, points_count=300)
        assert reopened.get_collection("docs").bm25 == config
        assert reopened.get_collection("dense").bm25 is None
        assert reopened.create_collection("docs", PROV).created_at == created.created_at
        committed = Filter(must=(Match("committed", (True,)),))
        assert reopened.count("docs", committed) == 60
        assert reopened.search("docs", data[123].vector, top_k=1)[0].id == data[123].id
        assert sparse_ids(reopened, "docs", "item123") == [data[123].id]
        hits = reopened.search(
            "docs", data[121].vector, 100, committed, mode="hybrid", query_text="item121 topic2"
        )
        assert hits[0].id == data[121].id and len(hits) == 60
    finally:
        reopened.close()


def test_acknowledged_upserts_survive_sigkill(tmp_path: Path) -> None:
    child = run_child(
        """
        import sys
        from pathlib import Path
        from tests.integration.store.edge_data import PROV, points
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
        assert sparse_ids(store, "docs", "item999") == [data[999].id]
        assert len(sparse_ids(store, "docs", "topic6", top_k=1000)) == len(range(6, 1000, 7))
    finally:
        store.close()
