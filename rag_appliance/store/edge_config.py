"""The embedded shard's engine config, chosen by the collection's size: vectors (in RAM or on
disk), BM25, the indexing threshold, HNSW's m and ef_construct, int8 scalar quantization, and
the search parameters (hnsw_ef, rescoring) a query uses at that size.

A collection is *large* from `quantization_threshold` points on. Its next index build then
gets int8 quantization (`quantization: "auto"`; always with `"int8"`, never with `"none"`) and
the large HNSW parameters; Qdrant's config-mismatch optimizer rewrites the segments built
before, so the change costs one rebuild. Searches always rescore quantized candidates with the
original vectors (`oversampling` x the limit), so int8 costs little recall; the int8 copy
(a quarter of the float32 bytes) comes on top of the originals, so RAM falls only with
`on_disk_vectors`, which leaves the originals in memory-mapped files. A shard opened without
a build keeps the HNSW and quantization config it was built with (qdrant-edge resolves an
unspecified parameter to the persisted one).

Standalone on purpose (only qdrant_edge and the standard library): the index-build child
process loads this file by its path and builds the same config from `spec()`'s JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import qdrant_edge as qe

if TYPE_CHECKING:  # never imported at run time: the build child loads this file alone
    from rag_appliance.settings import StoreSettings

# The BM25 sparse vector's name (bm25.VECTOR; not imported, to keep this module standalone).
SPARSE_VECTOR = "bm25"
QUANTIZATION_MODES = ("auto", "int8", "none")
# Qdrant's defaults; a small collection keeps them.
SMALL_M, SMALL_EF_CONSTRUCT = 16, 100
# Large collections: a wider build search, so the graph stays good with int8 scoring.
LARGE_M, LARGE_EF_CONSTRUCT = 16, 128
# Search ef by collection size: (points below, ef); the last applies from there on.
EF_BY_SIZE = ((100_000, 64), (500_000, 100), (None, 128))
# Qdrant's default, in KB of vectors: a filter matching fewer points is answered by the payload
# index and an exact scan of those points rather than by the graph.
FULL_SCAN_KB = 10_000
INT8_QUANTILE = 0.99


@dataclass(frozen=True)
class EdgeTuning:
    """The size-dependent engine settings of the embedded store (store.* settings)."""

    quantization: str = "auto"
    quantization_threshold: int = 500_000
    oversampling: float = 2.0
    on_disk_vectors: bool = False
    hnsw_m: int | None = None
    hnsw_ef_construct: int | None = None
    hnsw_ef: int | None = None

    def __post_init__(self) -> None:
        """Reject values the engine would refuse later, at a build."""
        if self.quantization not in QUANTIZATION_MODES:
            raise ValueError(f"quantization must be one of {QUANTIZATION_MODES}")
        if self.quantization_threshold < 0 or self.oversampling < 1:
            raise ValueError("quantization_threshold must be >= 0 and oversampling >= 1")
        for value in (self.hnsw_m, self.hnsw_ef_construct, self.hnsw_ef):
            if value is not None and value < 4:
                raise ValueError("HNSW parameters must be >= 4")

    @classmethod
    def from_settings(cls, store: StoreSettings) -> EdgeTuning:
        """The tuning the store section of the settings asks for."""
        return cls(
            quantization=store.quantization,
            quantization_threshold=store.quantization_threshold,
            oversampling=store.quantization_oversampling,
            on_disk_vectors=store.on_disk_vectors,
            hnsw_m=store.hnsw_m,
            hnsw_ef_construct=store.hnsw_ef_construct,
            hnsw_ef=store.hnsw_ef,
        )

    def large(self, points: int) -> bool:
        """Whether a collection of `points` gets the large-collection config at its build."""
        return points >= self.quantization_threshold

    def quantized(self, points: int) -> bool:
        """Whether a build of a collection of `points` quantizes its vectors to int8."""
        if self.quantization == "auto":
            return self.large(points)
        return self.quantization == "int8"

    def build_params(self, points: int) -> tuple[int, int]:
        """HNSW (m, ef_construct) for a build at `points`: the settings, else by size."""
        large = self.large(points)
        m, ef = (LARGE_M, LARGE_EF_CONSTRUCT) if large else (SMALL_M, SMALL_EF_CONSTRUCT)
        return self.hnsw_m or m, self.hnsw_ef_construct or ef

    def search_ef(self, points: int, limit: int) -> int:
        """HNSW ef for a query of `limit` results on `points`: the setting, else by size."""
        ef = self.hnsw_ef
        if ef is None:
            ef = next(e for below, e in EF_BY_SIZE if below is None or points < below)
        return max(ef, limit)

    def spec(
        self, dimension: int, threshold: int, sparse: bool, points: int | None = None
    ) -> dict[str, Any]:
        """A shard config as JSON: for a build at `points` (HNSW and quantization chosen by
        size), or with `points` None to open a shard as it was built."""
        spec: dict[str, Any] = {
            "dimension": dimension,
            "indexing_kb": indexing_kb(threshold, dimension),
            "sparse": sparse,
            "on_disk": self.on_disk_vectors,
            "hnsw": None,
            # An explicit "int8" applies from the next optimize, whatever the shard had.
            "int8": self.quantization == "int8",
        }
        if points is not None:
            spec["hnsw"] = list(self.build_params(points))
            spec["int8"] = self.quantized(points)
        return spec

    def search_params(self, points: int, limit: int) -> qe.SearchParams:
        """The engine's parameters for a dense query of `limit` on `points`."""
        return qe.SearchParams(
            hnsw_ef=self.search_ef(points, limit),
            # Ignored by segments without quantization; on quantized ones, the int8 scores pick
            # `oversampling` x limit candidates and the original vectors order them.
            quantization=qe.QuantizationSearchParams(rescore=True, oversampling=self.oversampling),
        )


def indexing_kb(threshold: int, dimension: int) -> int:
    """Qdrant's indexing threshold (KB of float32 vectors per segment) for `threshold` points."""
    # Rounded down so that a segment of `threshold` points always qualifies.
    kb = threshold * dimension * 4 // 1024
    return max(kb, 1) if threshold else 0


def config(spec: dict[str, Any]) -> qe.EdgeConfig:
    """The EdgeConfig a `spec` describes (given to create, load and the build child)."""
    quantization = None
    if spec["int8"]:
        quantization = qe.ScalarQuantizationConfig(
            qe.ScalarType.Int8, quantile=INT8_QUANTILE, memory=qe.Memory.Pinned
        )
    hnsw = None
    if spec["hnsw"] is not None:
        m, ef_construct = spec["hnsw"]
        hnsw = qe.HnswIndexConfig(m=m, ef_construct=ef_construct, full_scan_threshold=FULL_SCAN_KB)
    # Cold: the original vectors stay in their memory-mapped files, read as the OS pages them.
    memory = qe.Memory.Cold if spec["on_disk"] else None
    dense = qe.EdgeVectorParams(size=spec["dimension"], distance=qe.Distance.Cosine, memory=memory)
    return qe.EdgeConfig(
        vectors=dense,
        # The engine applies IDF; the chunks' vectors carry BM25's term frequencies (bm25.py).
        sparse_vectors=(
            {SPARSE_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
            if spec["sparse"]
            else None
        ),
        hnsw_config=hnsw,
        quantization_config=quantization,
        optimizers=qe.EdgeOptimizersConfig(indexing_threshold=spec["indexing_kb"]),
    )
