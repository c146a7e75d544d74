"""Atomic document replacement on the pgvector store: searches running while a document is
replaced again and again never see its old and new chunks mixed, nor no chunk at all; through
`replace_documents` itself and through the indexing pipeline, which uses it on this store."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from rag_appliance.collections.service import COMMITTED, doc_filter
from rag_appliance.ingest.pipeline import Document
from rag_appliance.store.base import Filter, Hit
from rag_appliance.store.pgvector import PgVectorStore
from tests.conftest import make_services, make_settings
from tests.fakes import FakeEncoder
from tests.integration.store.edge_data import DIM, PROV
from tests.integration.store.test_pgvector import version_points
from tests.unit.store.pg_fixture import pg_store

# Every kind of query a search loop runs: (mode keywords, whether it groups by document).
QUERIES: list[dict[str, Any]] = [
    {"mode": "dense"},
    {"mode": "sparse", "query_text": "shared chunk0"},
    {"mode": "hybrid", "query_text": "shared", "fusion": "rrf"},
    {"mode": "hybrid", "query_text": "shared", "fusion": "weighted"},
]


@pytest.fixture
def store() -> Iterator[PgVectorStore]:
    s = pg_store()
    yield s
    s.close()


class SearchLoop:
    """Searches `check` runs on in a thread until stopped; what went wrong is kept."""

    def __init__(
        self,
        search: Callable[[dict[str, Any]], list[Hit]],
        check: Callable[[list[Hit]], str | None],
    ) -> None:
        self.search, self.check = search, check
        self.stop = threading.Event()
        self.searches = 0
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            for query in QUERIES:
                try:
                    problem = self.check(self.search(query))
                except Exception as exc:  # pragma: no cover - reported by the test
                    problem = f"{type(exc).__name__}: {exc}"
                if problem:
                    self.failures.append(f"{query}: {problem}")
                self.searches += 1

    def __enter__(self) -> SearchLoop:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def one_version(hits: list[Hit], key: str, size: Callable[[Any], int]) -> str | None:
    """None if the hits are exactly one version's chunks (by payload `key`), else what is
    wrong with them."""
    versions = {h.payload[key] for h in hits}
    if len(versions) != 1:
        return f"versions {sorted(map(str, versions))} in {len(hits)} hits"
    (version,) = versions
    if len(hits) != size(version):
        return f"{len(hits)} chunks of version {version}, which has {size(version)}"
    return None


def test_searches_never_see_a_replaced_document_mixed_or_absent(store: PgVectorStore) -> None:
    store.create_collection("c", PROV)
    store.replace_documents("c", ["d0"], version_points(0, 0))
    store.upsert("c", version_points(1, 0))  # a neighbour that must stay untouched
    only = Filter(must=(*doc_filter("d0").must, COMMITTED))
    query = np.ones(DIM, dtype=np.float32)

    def search(kw: dict[str, Any]) -> list[Hit]:
        return store.search("c", query, 50, only, **kw)

    def check(hits: list[Hit]) -> str | None:
        return one_version(hits, "version", lambda v: 3 + v % 7)

    with SearchLoop(search, check) as loop:
        for version in range(1, 60):
            store.replace_documents("c", ["d0"], version_points(0, version))
            # Grouped: the one document, whatever its version.
            grouped = store.search("c", query, 5, only, group_by_document=True)
            assert [h.payload["doc_id"] for h in grouped] == ["d0"]
    assert loop.failures == []
    assert loop.searches > 20
    assert store.count("c", only) == 3 + 59 % 7
    assert store.count("c", doc_filter("d1")) == 3


async def test_reindexing_through_the_pipeline_is_atomic(
    store: PgVectorStore, tokenizer: Any
) -> None:
    settings = make_settings(
        generation={"enabled": False}, ingest={"chunk_max_tokens": 12, "chunk_overlap_tokens": 0}
    )
    services = make_services(settings, FakeEncoder(), store, tokenizer=tokenizer)
    await services.start()
    try:
        pipeline = services.require_pipeline()
        texts = [" ".join(f"word{v}x{i} shared" for i in range(4 + 5 * (v % 4))) for v in range(12)]
        await pipeline.index("kb", [Document(texts[0], id="doc"), Document("other", id="nb")])
        only = Filter(must=(*doc_filter("doc").must, COMMITTED))
        query = np.ones(FakeEncoder().profile.dimension, dtype=np.float32)

        def search(kw: dict[str, Any]) -> list[Hit]:
            return store.search("kb", query, 100, only, **kw)

        def check(hits: list[Hit]) -> str | None:
            # Each version's chunks carry its content hash and their count.
            sizes = {h.payload["content_hash"]: h.payload["chunk_count"] for h in hits}
            return one_version(hits, "content_hash", lambda digest: sizes[digest])

        with SearchLoop(search, check) as loop:
            for text in texts[1:]:
                [result] = await pipeline.index("kb", [Document(text, id="doc")])
                assert result.status == "indexed"
        assert loop.failures == []
        assert loop.searches > 4
        # The pipeline wrote committed chunks in one go: nothing left uncommitted or stale.
        assert store.count("kb", doc_filter("doc")) == store.count("kb", only)
        assert store.count("kb", doc_filter("nb")) == 1
        [again] = await pipeline.index("kb", [Document(texts[-1], id="doc")])
        assert again.status == "unchanged"
    finally:
        await services.stop()
