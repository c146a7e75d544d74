"""The embedded store's size-dependent config: quantization, HNSW parameters, search params."""

from __future__ import annotations

from pathlib import Path

import pytest
import qdrant_edge as qe
from pydantic import ValidationError

from rag_appliance.settings import Settings, StoreSettings
from rag_appliance.store import bm25, edge_config
from rag_appliance.store.base import Provenance
from rag_appliance.store.edge_config import EdgeTuning
from rag_appliance.store.edge_hnsw import IndexBuilder
from rag_appliance.store.edge_layout import EdgeCollection
from rag_appliance.store.qdrant_edge import QdrantEdgeStore, from_settings


def test_auto_quantizes_from_the_threshold_only() -> None:
    tuning = EdgeTuning(quantization_threshold=1000)
    assert not tuning.quantized(999)
    assert tuning.quantized(1000)
    assert EdgeTuning(quantization="int8").quantized(0)
    assert not EdgeTuning(quantization="none", quantization_threshold=10).quantized(10**6)


def test_build_spec_over_the_threshold_carries_int8_and_the_large_hnsw() -> None:
    tuning = EdgeTuning(quantization_threshold=500_000)
    spec = tuning.spec(384, 20_000, sparse=True, points=600_000)
    assert spec["int8"] is True
    assert spec["hnsw"] == [edge_config.LARGE_M, edge_config.LARGE_EF_CONSTRUCT]
    config = edge_config.config(spec)
    quantization = config.quantization_config
    assert isinstance(quantization, qe.ScalarQuantizationConfig)
    assert quantization.type == qe.ScalarType.Int8
    assert quantization.quantile == pytest.approx(edge_config.INT8_QUANTILE)
    assert config.hnsw_config is not None
    assert (config.hnsw_config.m, config.hnsw_config.ef_construct) == (16, 128)
    assert set(config.sparse_vectors) == {bm25.VECTOR}
    assert config.optimizers is not None
    assert config.optimizers.indexing_threshold == 20_000 * 384 * 4 // 1024


def test_build_spec_below_the_threshold_is_unquantized_with_qdrants_defaults() -> None:
    spec = EdgeTuning().spec(384, 20_000, sparse=False, points=100_000)
    assert spec["int8"] is False
    assert spec["hnsw"] == [16, 100]
    config = edge_config.config(spec)
    assert config.quantization_config is None
    assert config.sparse_vectors == {}


def test_open_spec_keeps_what_a_build_chose_unless_int8_is_forced() -> None:
    opened = EdgeTuning().spec(384, 20_000, sparse=True)
    assert opened["hnsw"] is None and opened["int8"] is False
    config = edge_config.config(opened)
    assert config.hnsw_config is None and config.quantization_config is None
    assert EdgeTuning(quantization="int8").spec(384, 20_000, sparse=True)["int8"] is True


def test_settings_override_the_sizes_choices() -> None:
    tuning = EdgeTuning(hnsw_m=32, hnsw_ef_construct=256, hnsw_ef=300)
    assert tuning.build_params(10) == (32, 256)
    assert tuning.build_params(10**7) == (32, 256)
    assert tuning.search_ef(10, 10) == 300


def test_search_ef_grows_with_the_collection_and_covers_the_limit() -> None:
    tuning = EdgeTuning()
    assert tuning.search_ef(50_000, 10) == 64
    assert tuning.search_ef(200_000, 10) == 100
    assert tuning.search_ef(1_000_000, 10) == 128
    assert tuning.search_ef(1_000, 500) == 500
    params = tuning.search_params(1_000_000, 10)
    assert params.hnsw_ef == 128
    assert params.quantization is not None
    assert params.quantization.rescore is True
    assert params.quantization.oversampling == 2.0


def test_on_disk_vectors_are_cold() -> None:
    spec = EdgeTuning(on_disk_vectors=True).spec(8, 100, sparse=False)
    assert edge_config.config(spec).vectors[""].memory == qe.Memory.Cold
    assert edge_config.config(EdgeTuning().spec(8, 100, sparse=False)).vectors[""].memory is None


def test_zero_threshold_disables_indexing() -> None:
    assert edge_config.indexing_kb(0, 384) == 0
    assert edge_config.indexing_kb(1, 8) == 1  # never 0 (off) for a positive threshold


def test_the_sparse_name_is_bm25s() -> None:
    assert edge_config.SPARSE_VECTOR == bm25.VECTOR


def test_bad_tuning_is_refused() -> None:
    with pytest.raises(ValueError):
        EdgeTuning(quantization="int4")
    with pytest.raises(ValueError):
        EdgeTuning(oversampling=0.5)
    with pytest.raises(ValidationError):
        StoreSettings(quantization="int4")
    with pytest.raises(ValidationError):
        StoreSettings(hnsw_m=2)


def test_index_builder_specs_follow_the_collection(tmp_path: Path) -> None:
    c = EdgeCollection("kb", tmp_path, Provenance(model="m", dimension=8), "now", "shard-x")
    builder = IndexBuilder(100, EdgeTuning(quantization_threshold=1000))
    assert builder.spec(c, 2000) == {
        "dimension": 8,
        "indexing_kb": 3,
        "sparse": False,
        "on_disk": False,
        "hnsw": [16, 128],
        "int8": True,
    }
    assert builder.spec(c, 10, sparse=True)["sparse"] is True
    assert builder.spec(c)["hnsw"] is None


def test_from_settings_applies_the_store_settings(tmp_path: Path) -> None:
    store_settings = StoreSettings(
        quantization="int8",
        quantization_threshold=7,
        quantization_oversampling=3.0,
        on_disk_vectors=True,
        hnsw_m=24,
        hnsw_ef_construct=200,
        hnsw_ef=150,
    )
    store = from_settings(Settings(data_dir=tmp_path, store=store_settings))
    try:
        assert isinstance(store, QdrantEdgeStore)
        assert store._index.tuning == EdgeTuning("int8", 7, 3.0, True, 24, 200, 150)
    finally:
        store.close()
