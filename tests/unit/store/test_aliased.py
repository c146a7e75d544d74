"""AliasedStore over the embedded store: every call by name resolved, listing, deletion, a
switch made elsewhere, and the alias table surviving a restart."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rag_appliance.store.aliased import TransactionalAliasedStore, aliased
from rag_appliance.store.base import Point, Provenance
from rag_appliance.store.qdrant_edge import QdrantEdgeStore

PROV = Provenance("m", 4)


def point(n: int, text: str) -> Point:
    vector = np.asarray([1.0, n, 0.0, 0.5], dtype=np.float32)
    return Point(str(uuid.UUID(int=n)), vector, {"doc_id": f"d{n}", "text": text}, text)


def test_names_resolve_listing_hides_versions_and_delete_keeps_old(tmp_path: Path) -> None:
    inner = QdrantEdgeStore(tmp_path / "s")
    try:
        for name in ("kb__v1", "kb__v2", "other"):
            inner.create_collection(name, PROV)
        inner.upsert("kb__v1", [point(1, "old text")])
        inner.set_alias("kb", "kb__v2")
        store = aliased(inner)
        store.upsert("kb", [point(2, "fresh text")])  # lands in the version the alias names
        assert inner.count("kb__v2") == 1 and inner.count("kb__v1") == 1
        (hit,) = store.search("kb", None, 5, mode="sparse", query_text="fresh")
        assert hit.payload["doc_id"] == "d2"
        assert [(c.name, c.version) for c in store.list_collections()] == [
            ("kb", "kb__v2"),
            ("other", None),
        ]
        store.delete_collection("kb")  # the current version and the alias; the old one stays
        assert inner.aliases() == {}
        assert [c.name for c in inner.list_collections()] == ["kb__v1", "other"]
    finally:
        inner.close()


def test_a_switch_made_elsewhere_is_seen_and_a_dropped_version_retried(tmp_path: Path) -> None:
    inner = QdrantEdgeStore(tmp_path / "s")
    try:
        inner.create_collection("kb__v1", PROV)
        inner.create_collection("kb__v2", PROV)
        inner.upsert("kb__v2", [point(1, "a"), point(2, "b")])
        inner.set_alias("kb", "kb__v1")
        store = aliased(inner, ttl_s=3600)  # the table is not read again by age in this test
        assert store.count("kb") == 0
        inner.set_alias("kb", "kb__v2")  # another process switches and drops the old version
        inner.delete_collection("kb__v1")
        assert store.count("kb") == 2  # the 404 on kb__v1 made it read the table again
    finally:
        inner.close()


def test_aliases_survive_a_restart_and_a_dead_target_is_dropped(tmp_path: Path) -> None:
    inner = QdrantEdgeStore(tmp_path / "s")
    inner.create_collection("kb__v1", PROV)
    inner.set_alias("kb", "kb__v1")
    inner.close()
    table = tmp_path / "s" / "aliases.json"
    raw = json.loads(table.read_text())
    # As a crash between a collection's deletion and the table's rewrite leaves it.
    raw["aliases"]["gone"] = "deleted__v1"
    table.write_text(json.dumps(raw))
    reopened = QdrantEdgeStore(tmp_path / "s")
    try:
        assert reopened.aliases() == {"kb": "kb__v1"}
    finally:
        reopened.close()


class FakeTransactionalStore(QdrantEdgeStore):
    """A fake of a store with replace_documents (as pgvector has): records its calls."""

    calls: list[tuple[str, list[str]]]

    def replace_documents(self, name: str, doc_ids: Sequence[str], points: Sequence[Point]) -> None:
        self.calls.append((name, list(doc_ids)))


def test_replace_documents_is_kept_and_resolved(tmp_path: Path) -> None:
    inner = FakeTransactionalStore(tmp_path / "s")
    inner.calls = []
    try:
        inner.create_collection("kb__v1", PROV)
        inner.set_alias("kb", "kb__v1")
        store = aliased(inner)
        assert isinstance(store, TransactionalAliasedStore)
        store.replace_documents("kb", ["d1"], [])
        assert inner.calls == [("kb__v1", ["d1"])]
    finally:
        inner.close()
