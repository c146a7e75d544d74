"""reindex on a real embedded store: shadow built, counts checked, alias switched, resumable,
the old version kept, and the 409 a server on the old model then answers."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rag_appliance.collections.reindex import drop_old, reindex
from rag_appliance.collections.service import CollectionService
from rag_appliance.embedding.models import ModelProfile
from rag_appliance.errors import CollectionNotFound, Conflict, InvalidRequest
from rag_appliance.store.aliased import ALIAS_TTL_S, aliased
from rag_appliance.store.base import DEFAULT_BM25, Point, Provenance
from rag_appliance.store.qdrant_edge import QdrantEdgeStore

DIM = 16
OLD = Provenance("old-model", DIM)
NEW = Provenance("new-model", DIM)


class FakeEmbed:
    """A fake embedding model: a vector from each text's hash; records what it was given."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.texts: list[str] = []
        self.calls = 0
        self.fail_after = fail_after

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt  # as Ctrl-C would stop it, between two pages
        self.calls += 1
        self.texts += texts
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[:DIM], np.uint8) for t in texts]
        return np.asarray(rows, dtype=np.float32) + 1.0


def chunk(i: int, committed: bool = True) -> Point:
    text = f"tide {'salt ' * (i + 1)}chunk {i}"
    payload = {
        "doc_id": f"d{i // 4}",
        "chunk_index": i % 4,
        "text": text,
        "metadata": {"title": f"Doc {i // 4}"},
        "committed": committed,
    }
    vector = np.random.default_rng(abs(i)).standard_normal(DIM).astype(np.float32)
    return Point(str(uuid.UUID(int=i + 1)), vector, payload, text_for_sparse=text)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QdrantEdgeStore]:
    s = QdrantEdgeStore(tmp_path / "store")
    s.create_collection("kb", OLD)
    s.upsert("kb", [chunk(i) for i in range(20)] + [chunk(99, committed=False)])
    yield s
    s.close()


def test_reindex_builds_the_next_version_and_switches_the_alias(
    store: QdrantEdgeStore, tmp_path: Path
) -> None:
    embed = FakeEmbed()
    result = reindex(store, embed, NEW, "kb", tmp_path / "state", batch=8)
    assert (result.version, result.previous, result.chunks) == ("kb__v2", "kb__v1", 20)
    assert store.aliases() == {"kb": "kb__v2"}
    new, old = store.get_collection("kb__v2"), store.get_collection("kb__v1")
    assert (new.provenance, new.points_count, new.bm25) == (NEW, 20, DEFAULT_BM25)
    assert (old.provenance, old.points_count) == (OLD, 21)  # the old version whole, kept
    # Embedded as the pipeline does: document title first; committed chunks only.
    assert len(embed.texts) == 20 and embed.texts[0].startswith("Doc 0\n\ntide")
    # BM25 vectors as the source had: sparse search works on the new version.
    assert store.search("kb__v2", None, 1, mode="sparse", query_text="salt")
    # Through the services' view: the alias by its name, its versions hidden.
    view = aliased(store)
    info = view.get_collection("kb")
    assert (info.name, info.version, info.provenance) == ("kb", "kb__v2", NEW)
    assert [(c.name, c.version) for c in view.list_collections()] == [("kb", "kb__v2")]
    assert not (tmp_path / "state" / "kb.json").exists()


def test_reindex_again_and_drop_old(store: QdrantEdgeStore, tmp_path: Path) -> None:
    reindex(store, FakeEmbed(), NEW, "kb", tmp_path / "state")
    back = reindex(store, FakeEmbed(), OLD, "kb", tmp_path / "state")  # re-index back
    assert (back.version, back.previous) == ("kb__v3", "kb__v2")
    same = reindex(store, FakeEmbed(), OLD, "kb", tmp_path / "state")
    assert not same.switched and same.version == "kb__v3"  # nothing to do
    assert drop_old(store, "kb", tmp_path / "state") == ["kb__v1", "kb__v2"]
    assert [c.name for c in store.list_collections()] == ["kb__v3"]
    assert store.aliases() == {"kb": "kb__v3"}
    with pytest.raises(InvalidRequest, match="not been re-indexed"):
        drop_old(store, "kb__v3", tmp_path / "state")


def test_an_interrupted_reindex_resumes_where_it_stopped(
    store: QdrantEdgeStore, tmp_path: Path
) -> None:
    with pytest.raises(KeyboardInterrupt):
        reindex(store, FakeEmbed(fail_after=2), NEW, "kb", tmp_path / "state", batch=6)
    # Nothing switched: `kb` still the old model's (adopted as version 1).
    assert store.aliases() == {"kb": "kb__v1"}
    assert store.count("kb__v2") == 12
    embed = FakeEmbed()
    result = reindex(store, embed, NEW, "kb", tmp_path / "state", batch=6, resume=True)
    assert result.resumed and result.chunks == 20
    assert len(embed.texts) == 8  # only the pages the first run did not write
    assert store.aliases() == {"kb": "kb__v2"} and store.count("kb__v2") == 20


def test_without_resume_an_interrupted_shadow_is_rebuilt(
    store: QdrantEdgeStore, tmp_path: Path
) -> None:
    with pytest.raises(KeyboardInterrupt):
        reindex(store, FakeEmbed(fail_after=1), NEW, "kb", tmp_path / "state", batch=6)
    embed = FakeEmbed()
    result = reindex(store, embed, NEW, "kb", tmp_path / "state", batch=6)
    assert not result.resumed and len(embed.texts) == 20
    assert result.version == "kb__v2" and store.count("kb__v2") == 20


def test_a_source_that_changes_meanwhile_switches_nothing(
    store: QdrantEdgeStore, tmp_path: Path
) -> None:
    embed = FakeEmbed()

    def writing_meanwhile(texts: list[str]) -> np.ndarray:
        if embed.calls == 1:  # a server writes to the collection during the re-index
            store.upsert("kb__v1", [chunk(-1)])  # behind the cursor
        return embed(texts)

    with pytest.raises(Conflict, match="nothing was switched"):
        reindex(store, writing_meanwhile, NEW, "kb", tmp_path / "state", batch=8)
    assert store.aliases() == {"kb": "kb__v1"}
    assert [c.name for c in store.list_collections()] == ["kb__v1"]  # the shadow dropped
    assert not (tmp_path / "state" / "kb.json").exists()


def test_a_missing_collection_is_a_404_and_writes_nothing(
    store: QdrantEdgeStore, tmp_path: Path
) -> None:
    with pytest.raises(CollectionNotFound):
        reindex(store, FakeEmbed(), NEW, "nope", tmp_path / "state")
    assert [c.name for c in store.list_collections()] == ["kb"] and store.aliases() == {}


def test_a_server_on_the_old_model_gets_a_409_that_says_why(
    store: QdrantEdgeStore, tmp_path: Path
) -> None:
    reindex(store, FakeEmbed(), NEW, "kb", tmp_path / "state")
    old = CollectionService(store, ModelProfile("old-model", DIM, 64, "mean"))
    with pytest.raises(Conflict) as err:
        asyncio.run(old.check("kb"))
    message = err.value.message
    assert "re-indexed with model 'new-model'" in message and "'kb__v2'" in message
    assert "rag-appliance reindex --collection kb --model old-model" in message
    asyncio.run(CollectionService(store, ModelProfile("new-model", DIM, 64, "mean")).check("kb"))


def test_a_running_server_on_the_old_model_refuses_after_the_switch(
    store: QdrantEdgeStore, tmp_path: Path
) -> None:
    """As against a shared store: the service checked `kb` before; the switch is seen after the
    alias table's TTL and the service's own check TTL."""
    running = CollectionService(store, ModelProfile("old-model", DIM, 64, "mean"), check_ttl_s=0)
    asyncio.run(running.check("kb"))
    reindex(store, FakeEmbed(), NEW, "kb", tmp_path / "state")
    time.sleep(ALIAS_TTL_S)
    with pytest.raises(Conflict, match="re-indexed with model 'new-model'"):
        asyncio.run(running.check("kb"))
