"""migrate from the embedded store to PostgreSQL + pgvector and to Milvus Lite, and back again.

2,000 chunks (64-d vectors, BM25 text) leave embedded Qdrant, land in the other engine and come
back into a fresh embedded store: every point, payload and vector survives, and the round trip
gives the same dense, BM25 and hybrid results as the original.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rag_appliance.collections.migrate import COMMITTED, migrate
from rag_appliance.store.base import Point, Provenance, SearchMode, VectorStore
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.unit.store.milvus_fixture import milvus_store
from tests.unit.store.pg_fixture import pg_store

DIM = 64
N = 2000
PROV = Provenance("test-model", DIM)
FILLER = ["wheel", "grain", "flour", "river", "stone", "salt", "marsh", "ferry", "lamp"]
OTHERS: dict[str, Callable[[Path], VectorStore]] = {"pgvector": pg_store, "milvus": milvus_store}


def points() -> list[Point]:
    rng = np.random.default_rng(3)
    out = []
    for i in range(N):
        # (times "tide" occurs, length) differs for every point: no two BM25 scores tie
        words = ["tide"] * (i % 50 + 1) + list(rng.choice(FILLER, i // 50 + 1))
        text = " ".join(words)
        out.append(
            Point(
                str(uuid.UUID(int=i + 1)),
                rng.standard_normal(DIM).astype(np.float32),
                {
                    "doc_id": f"doc-{i // 4}",
                    "chunk_index": i % 4,
                    "text": text,
                    "metadata": {"n": i, "tags": ["a", "b"][: i % 3], "nested": {"x": i / 7}},
                    "committed": True,
                },
                text_for_sparse=text,
            )
        )
    return out


def results(store: VectorStore) -> dict[str, list[tuple[float, list[str]]]]:
    """Per mode, the scores in rank order with the ids at each (RRF's equal sums come in any
    order)."""
    query = np.random.default_rng(9).standard_normal(DIM).astype(np.float32)
    out: dict[str, list[tuple[float, list[str]]]] = {}
    modes: tuple[SearchMode, ...] = ("dense", "sparse", "hybrid")
    for mode in modes:
        hits = store.search("kb", query, 20, COMMITTED, mode=mode, query_text="tide marsh")
        ranked: dict[float, list[str]] = {}
        for h in hits:
            ranked.setdefault(round(h.score, 4), []).append(h.id)
        out[mode] = [(score, sorted(ids)) for score, ids in ranked.items()]
    return out


def everything(store: VectorStore) -> dict[str, tuple[dict[str, object], np.ndarray]]:
    out = {}
    offset: str | None = None
    while True:
        page, offset = store.scroll("kb", None, 500, offset, with_vectors=True)
        for r in page:
            assert r.vector is not None
            out[r.id] = (r.payload, r.vector)
        if offset is None:
            return out


@pytest.mark.parametrize("backend", sorted(OTHERS))
def test_there_and_back_keeps_points_payloads_and_results(backend: str, tmp_path: Path) -> None:
    source = QdrantEdgeStore(tmp_path / "a")
    other = OTHERS[backend](tmp_path)
    back = QdrantEdgeStore(tmp_path / "b")
    try:
        source.create_collection("kb", PROV)
        source.upsert("kb", points())
        [there] = migrate(source, other, ["kb"], tmp_path / "state-1", page=500)
        assert (there.copied, there.target_count) == (N, N)
        assert other.get_collection("kb").provenance == PROV
        [home] = migrate(other, back, ["kb"], tmp_path / "state-2", page=500)
        assert (home.copied, home.target_count) == (N, N)

        original, returned = everything(source), everything(back)
        assert set(returned) == set(original)
        for pid, (payload, vector) in original.items():
            assert returned[pid][0] == payload
            assert np.allclose(returned[pid][1], vector, atol=1e-5)
        assert results(back) == results(source)
        # and in the other engine itself the exact arms agree with the source
        theirs, ours = results(other), results(source)
        assert [ids for _, ids in theirs["sparse"]] == [ids for _, ids in ours["sparse"]]
        dense = [{i for _, ids in r["dense"] for i in ids} for r in (theirs, ours)]
        assert len(dense[0] & dense[1]) >= 18  # an HNSW index there may miss one or two
    finally:
        for store in (source, other, back):
            store.close()
