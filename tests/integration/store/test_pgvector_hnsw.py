"""pgvector's HNSW by segment: built in the background past the threshold, searched exactly
meanwhile, results the same before and after, updates and deletes seen at once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from rag_appliance.store.base import Filter, Match, Point, Provenance
from rag_appliance.store.pgvector import PgVectorStore
from tests.unit.store.pg_fixture import TestPgVectorStore, server

DIM = 16
PROV = Provenance("test-model", DIM)
COMMITTED = Filter(must=(Match("committed", (True,)),))


@pytest.fixture
def store() -> Iterator[PgVectorStore]:
    s = TestPgVectorStore(
        server().conninfo,
        schema=f"t_{uuid.uuid4().hex[:12]}",
        pool_size=4,
        timeout=10,
        hnsw_threshold=100,
    )
    yield s
    s.close()


def points(start: int, n: int, rng: np.random.Generator) -> list[Point]:
    return [
        Point(
            str(uuid.UUID(int=start + i + 1)),
            rng.standard_normal(DIM).astype(np.float32),
            {"doc_id": f"d{start + i}", "chunk_index": 0, "committed": True, "n": start + i},
            text_for_sparse=f"tide mill {start + i}",
        )
        for i in range(n)
    ]


def top(store: PgVectorStore, query: np.ndarray, k: int = 10) -> list[str]:
    return [h.id for h in store.search("c", query, k, COMMITTED)]


def test_segments_are_built_past_the_threshold_and_results_hold(store: PgVectorStore) -> None:
    rng = np.random.default_rng(1)
    store.create_collection("c", PROV)
    pts = points(0, 350, rng)
    for i in range(0, len(pts), 50):
        store.upsert("c", pts[i : i + 50])
    queries = [rng.standard_normal(DIM).astype(np.float32) for _ in range(5)]
    vectors = np.stack([p.vector / np.linalg.norm(p.vector) for p in pts])
    ids = [p.id for p in pts]

    def exact(q: np.ndarray) -> list[str]:
        order = np.argsort(-(vectors @ (q / np.linalg.norm(q))))[:10]
        return [ids[i] for i in order]

    assert store.wait_for_index("c", timeout=120)
    assert store.indexed_points("c") >= 300  # sealed segments past the threshold of 100
    # HNSW at this size finds the exact top 10 (ef_search >= 40 over a few hundred points)
    for q in queries:
        assert top(store, q) == exact(q)
    # rows written after the build are in the exact tail and found at once
    extra = points(1000, 20, rng)
    store.upsert("c", extra)
    probe = extra[0].vector
    assert top(store, probe, 1) == [extra[0].id]
    # an update moves a row out of its indexed segment: the new vector is what is found
    moved = Point(pts[0].id, -pts[5].vector, pts[0].payload, text_for_sparse="tide mill 0")
    store.upsert("c", [moved])
    assert top(store, -pts[5].vector, 1) == [pts[0].id]
    # a delete is seen at once, indexed segment or tail
    store.delete("c", Filter(must=(Match("doc_id", ("d5", "d1000")),)))
    assert pts[5].id not in top(store, pts[5].vector, 5)
    assert extra[0].id not in top(store, probe, 5)
    assert store.count("c") == 350 + 20 - 2
    sparse = store.search("c", None, 3, COMMITTED, mode="sparse", query_text="tide 42")
    assert sparse[0].payload["n"] == 42
