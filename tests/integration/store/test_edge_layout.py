"""The embedded store's files: one process per store, crash leftovers removed on open."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag_appliance.errors import InvalidRequest, ServiceUnavailable
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.integration.store.edge_data import PROV, points


def test_one_process_per_store(tmp_path: Path) -> None:
    store = QdrantEdgeStore(tmp_path)
    try:
        with pytest.raises(ServiceUnavailable):
            QdrantEdgeStore(tmp_path)
    finally:
        store.close()
    QdrantEdgeStore(tmp_path).close()  # released by close


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


def test_a_collection_from_before_sparse_vectors_opens_dense_only(tmp_path: Path) -> None:
    store = QdrantEdgeStore(tmp_path)
    store.create_collection("old", PROV, bm25=None)
    store.upsert("old", points(0, 20))
    store.close()
    # collection.json as the adapter wrote it before BM25: no "bm25", no "indexed_points".
    meta_path = tmp_path / "collections/old/collection.json"
    meta = json.loads(meta_path.read_text())
    del meta["bm25"], meta["indexed_points"]
    meta_path.write_text(json.dumps(meta))

    store = QdrantEdgeStore(tmp_path)
    try:
        info = store.create_collection("old", PROV)  # same model: no 409, nothing changes
        assert (info.bm25, info.points_count) == (None, 20)
        data = points(0, 20)
        assert store.search("old", data[7].vector, top_k=1)[0].id == data[7].id
        with pytest.raises(InvalidRequest):
            store.search("old", data[7].vector, 1, mode="hybrid", query_text="item7")
        store.upsert("old", points(20, 30))  # texts ignored
        assert store.count("old") == 30
    finally:
        store.close()
