"""int8 quantization, on-disk vectors and HNSW parameters by size on real qdrant-edge shards:
the index build applies them, and a quantized collection still finds the right points."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from rag_appliance.store.base import Filter, Match, Point
from rag_appliance.store.edge_config import EdgeTuning
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.integration.store.edge_data import PROV

N = 1200
THRESHOLD = 1000
COMMITTED = Filter(must=(Match("committed", (True,)),))


def chunk_points() -> list[Point]:
    """N points; every fourth one uncommitted; point i's text alone has the term item{i}."""
    vectors = np.random.default_rng(5).standard_normal((N, PROV.dimension)).astype(np.float32)
    return [
        Point(
            str(uuid.UUID(int=i + 1)),
            vectors[i],
            {"doc_id": f"d{i // 4}", "chunk_index": i, "committed": i % 4 != 0},
            text_for_sparse=f"item{i} about topic{i % 9}",
        )
        for i in range(N)
    ]


def built_segments(store_dir: Path, name: str) -> list[dict[str, Any]]:
    """The dense vector config of each HNSW segment of the collection's live shard."""
    meta = json.loads((store_dir / "collections" / name / "collection.json").read_text())
    segments = store_dir / "collections" / name / meta["shard"] / "segments"
    configs = [json.loads(p.read_text())["config"] for p in segments.glob("*/segment.json")]
    dense = [c["vector_data"][""] for c in configs]
    return [d for d in dense if d["index"]["type"] == "hnsw"]


def build(tmp: Path, tuning: EdgeTuning, data: list[Point]) -> QdrantEdgeStore:
    """A store with the collection `kb` of `data`, its index built."""
    store = QdrantEdgeStore(tmp, hnsw_threshold=THRESHOLD, tuning=tuning)
    store.create_collection("kb", PROV)
    store.upsert("kb", data)
    assert store.wait_for_index("kb", timeout=120)
    assert store.indexed_points("kb") >= THRESHOLD
    return store


def test_int8_on_disk_collection_finds_the_right_points_and_honours_the_commit_flag(
    tmp_path: Path,
) -> None:
    data = chunk_points()
    store = build(tmp_path, EdgeTuning(quantization="int8", on_disk_vectors=True), data)
    try:
        segments = built_segments(tmp_path, "kb")
        assert segments
        for seg in segments:
            assert seg["quantization_config"]["scalar"]["type"] == "int8"
            assert seg["storage_type"] == "Mmap"  # on disk, not InRamMmap
            assert seg["index"]["options"]["m"] == 16
            assert seg["index"]["options"]["ef_construct"] == 100  # not large
        committed = [i for i in range(N) if i % 4][:40]
        for i in committed:
            assert store.search("kb", data[i].vector, 1, COMMITTED)[0].id == data[i].id
        for i in range(0, 160, 4):  # uncommitted: found without the flag, never with it
            assert store.search("kb", data[i].vector, 1)[0].id == data[i].id
            hits = store.search("kb", data[i].vector, 10, COMMITTED)
            assert len(hits) == 10
            assert all(h.payload["committed"] is True for h in hits)
        hybrid = store.search("kb", data[5].vector, 3, COMMITTED, mode="hybrid", query_text="item5")
        assert hybrid[0].id == data[5].id
        assert not store.search("kb", None, 3, COMMITTED, mode="sparse", query_text="item8")
    finally:
        store.close()


def test_auto_quantizes_a_collection_from_the_threshold_with_the_large_build(
    tmp_path: Path,
) -> None:
    data = chunk_points()
    large = build(tmp_path / "large", EdgeTuning(quantization_threshold=N // 2), data)
    try:
        segments = built_segments(tmp_path / "large", "kb")
        assert segments
        for seg in segments:
            assert seg["quantization_config"]["scalar"]["type"] == "int8"
            assert seg["storage_type"] == "InRamMmap"
            assert seg["index"]["options"]["ef_construct"] == 128
        assert large.search("kb", data[7].vector, 1, COMMITTED)[0].id == data[7].id
    finally:
        large.close()
    # Reopened without a build, it keeps what the build chose.
    reopened = QdrantEdgeStore(tmp_path / "large", hnsw_threshold=THRESHOLD)
    try:
        assert reopened.search("kb", data[9].vector, 1)[0].id == data[9].id
        assert all(s["quantization_config"] for s in built_segments(tmp_path / "large", "kb"))
    finally:
        reopened.close()
