"""migrate: collections copied between real stores (embedded Qdrant -> qdrant-client), resumable."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from rag_appliance.collections.migrate import COMMITTED, migrate
from rag_appliance.errors import Conflict, InvalidRequest
from rag_appliance.store.base import Point, Provenance, SearchMode, VectorStore
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from rag_appliance.store.qdrant_server import QdrantServerStore

DIM = 16
PROV = Provenance("test-model", DIM, document_prefix="passage: ")
WORDS = ["wheel", "grain", "flour", "river", "stone", "salt", "marsh", "ferry", "lamp"]


def points(n: int, committed: bool = True) -> list[Point]:
    rng = np.random.default_rng(n)
    out = []
    for i in range(n):
        # the query's word a different number of times per point: no two BM25 scores tie
        text = " ".join(["tide"] * (i + 1) + list(rng.choice(WORDS, 3)))
        out.append(
            Point(
                str(uuid.UUID(int=i + 1)),
                rng.standard_normal(DIM).astype(np.float32),
                {
                    "doc_id": f"d{i // 3}",
                    "chunk_index": i % 3,
                    "text": text,
                    "metadata": {"title": f"Doc {i // 3}", "n": i},
                    "committed": committed,
                },
                text_for_sparse=f"Doc {i // 3}\n\n{text}",
            )
        )
    return out


@pytest.fixture
def source(tmp_path: Path) -> Any:
    store = QdrantEdgeStore(tmp_path / "edge")
    store.create_collection("kb", PROV)
    store.upsert("kb", points(40))
    # a crash's leftover: uncommitted chunks are not copied
    leftover = [
        Point(str(uuid.UUID(int=1000 + i)), p.vector, {**p.payload, "committed": False})
        for i, p in enumerate(points(2))
    ]
    store.create_collection("dense-only", PROV, bm25=None)
    store.upsert("dense-only", [*points(5), *leftover])
    yield store
    store.close()


@pytest.fixture(params=["qdrant_server", "qdrant_edge"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "qdrant_server":
        store: VectorStore = QdrantServerStore(QdrantClient(":memory:"))
    else:
        store = QdrantEdgeStore(tmp_path / "edge-copy")
    yield store
    store.close()


def ranking(store: VectorStore, mode: SearchMode) -> tuple[list[float], set[str]]:
    """Every hit's score in rank order and the ids (equal scores may come in either order)."""
    query = np.ones(DIM, dtype=np.float32)
    hits = store.search(
        "kb",
        query,
        50,
        COMMITTED,
        mode=mode,
        query_text="tide mill heron",
    )
    return [round(h.score, 4) for h in hits], {h.id for h in hits}


def test_every_committed_point_payload_and_search_result_survives(
    source: QdrantEdgeStore, target: VectorStore, tmp_path: Path
) -> None:
    seen: list[tuple[str, int, int]] = []
    results = migrate(
        source, target, None, tmp_path / "state", page=7, progress=lambda *a: seen.append(a)
    )
    assert [(r.collection, r.copied, r.target_count) for r in results] == [
        ("dense-only", 5, 5),
        ("kb", 40, 40),
    ]
    assert seen[-1] == ("kb", 40, 40)
    info = target.get_collection("kb")
    assert info.provenance == PROV and info.bm25 == source.get_collection("kb").bm25
    assert target.get_collection("dense-only").bm25 is None
    want, _ = source.scroll("kb", COMMITTED, 100, with_vectors=True)
    got, _ = target.scroll("kb", None, 100, with_vectors=True)
    assert {r.id: r.payload for r in got} == {r.id: r.payload for r in want}
    vectors = {r.id: r.vector for r in want if r.vector is not None}
    assert len(vectors) == len(want)
    for r in got:
        assert r.vector is not None
        assert np.allclose(r.vector, vectors[r.id], atol=1e-5)
    # qdrant-client's local mode fuses RRF ranks its own way, so hybrid is compared engine to
    # engine only
    same_engine = isinstance(target, QdrantEdgeStore)
    for mode in ("dense", "sparse", "hybrid") if same_engine else ("dense", "sparse"):
        assert ranking(target, mode) == ranking(source, mode), mode
    assert not list((tmp_path / "state").iterdir())  # checkpoints gone once done


class FailingStore:
    """A real store that fails its n-th upsert, as a lost connection would (a fake wrapper)."""

    def __init__(self, inner: VectorStore, fail_at: int) -> None:
        self.inner, self.fail_at, self.calls = inner, fail_at, 0

    def upsert(self, name: str, pts: Sequence[Point]) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise ConnectionError("connection lost")
        self.inner.upsert(name, pts)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


def test_an_interrupted_copy_is_invisible_and_resumes(
    source: QdrantEdgeStore, target: VectorStore, tmp_path: Path
) -> None:
    flaky = FailingStore(target, fail_at=3)
    with pytest.raises(ConnectionError):
        migrate(source, flaky, ["kb"], tmp_path / "state", page=10)
    # two pages landed, uncommitted: nothing is searchable or counted as indexed yet
    assert target.count("kb") == 20 and target.count("kb", COMMITTED) == 0
    [result] = migrate(source, target, ["kb"], tmp_path / "state", page=10)
    assert result.resumed and result.copied == 40 and result.target_count == 40
    assert target.count("kb") == 40


def test_a_target_collection_with_data_is_refused(
    source: QdrantEdgeStore, target: VectorStore, tmp_path: Path
) -> None:
    target.create_collection("kb", PROV)
    target.upsert("kb", points(1))
    with pytest.raises(Conflict, match="already holds points"):
        migrate(source, target, ["kb"], tmp_path / "state")
    with pytest.raises(InvalidRequest, match="not in the source store: nope"):
        migrate(source, target, ["nope"], tmp_path / "state")


def test_another_model_in_the_target_is_a_conflict(
    source: QdrantEdgeStore, target: VectorStore, tmp_path: Path
) -> None:
    target.create_collection("kb", Provenance("other-model", DIM))
    with pytest.raises(Conflict):
        migrate(source, target, ["kb"], tmp_path / "state")
