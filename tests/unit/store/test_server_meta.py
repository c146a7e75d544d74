"""The server adapter's collection metadata: its dict form and how long a copy is trusted."""

from __future__ import annotations

import pytest

from rag_appliance.errors import Conflict
from rag_appliance.store import server_meta
from rag_appliance.store.base import Bm25Config, Provenance
from rag_appliance.store.server_meta import Meta, MetaCache, from_metadata, metadata

PROV = Provenance("test-model", 8)


@pytest.mark.parametrize("bm25", [None, Bm25Config(), Bm25Config(language="german", k=1.5)])
def test_metadata_round_trips(bm25: Bm25Config | None) -> None:
    meta = Meta(PROV, "2024-01-01T00:00:00Z", bm25)
    assert from_metadata("docs", metadata(meta)) == meta


@pytest.mark.parametrize(
    "raw", [None, {}, {"other": 1}, {"rag_appliance": "x"}, {"rag_appliance": {"model": "m"}}]
)
def test_a_collection_without_our_entry_is_a_conflict(raw: dict[str, object] | None) -> None:
    with pytest.raises(Conflict, match="not created by rag-appliance") as err:
        from_metadata("docs", raw)
    assert err.value.param == "collection"


def test_dense_only_metadata_expires_and_bm25_metadata_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = MetaCache()
    dense, sparse = Meta(PROV, "t"), Meta(PROV, "t", Bm25Config())
    cache.put("dense", dense)
    cache.put("sparse", sparse)
    assert cache.get("dense") == dense and cache.get("sparse") == sparse
    monkeypatch.setattr(server_meta, "DENSE_META_TTL_S", 0.0)
    assert cache.get("dense") is None
    assert cache.get("sparse") == sparse
    cache.drop("sparse")
    assert cache.get("sparse") is None and cache.get("never") is None
