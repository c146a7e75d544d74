"""The VectorStore contract, run against every adapter on a real engine (no mocks).

qdrant_edge runs the Qdrant engine itself. qdrant_server runs on qdrant-client's pure-Python
`:memory:` mode, not on a Qdrant server: that mode ignores payload indexes and reports a missing
collection with a ValueError where a server answers a REST 404, so what is server-specific (the
404 mapping, with recorded responses) is tested in test_qdrant_server.py.

A new adapter is one more entry in ADAPTERS; test_every_backend_runs_the_contract keeps it so.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from rag_appliance.errors import CollectionNotFound, Conflict, InvalidRequest
from rag_appliance.store import bm25
from rag_appliance.store.base import (
    Bm25Config,
    Filter,
    Hit,
    Match,
    Point,
    Provenance,
    Range,
    VectorStore,
)
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from rag_appliance.store.qdrant_server import QdrantServerStore
from rag_appliance.store.registry import BACKENDS
from tests.unit.store.milvus_fixture import milvus_store
from tests.unit.store.pg_fixture import pg_store

DIM = 8
PROV = Provenance(model="test-model", dimension=DIM, document_prefix="passage: ")

# backend name (as in the registry) -> a fresh store under a temporary directory
ADAPTERS: dict[str, Callable[[Path], VectorStore]] = {
    "qdrant_edge": lambda tmp: QdrantEdgeStore(tmp / "store"),
    "qdrant_server": lambda tmp: QdrantServerStore(QdrantClient(":memory:")),
    "pgvector": pg_store,
    "milvus": milvus_store,
}


@pytest.fixture(params=sorted(ADAPTERS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    s = ADAPTERS[request.param](tmp_path)
    yield s
    s.close()


def test_every_backend_runs_the_contract() -> None:
    assert set(ADAPTERS) == set(BACKENDS)


def unit(*components: float) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(components)] = components
    return v


def pid(n: int) -> str:
    return str(uuid.UUID(int=n + 1))


def docs(n: int) -> list[Point]:
    """n points: doc d{i%3}, chunk i, nested metadata, tags, a bool, a float and a text."""
    rng = np.random.default_rng(7)
    return [
        Point(
            pid(i),
            rng.standard_normal(DIM).astype(np.float32),
            {
                "doc_id": f"d{i % 3}",
                "chunk_index": i,
                "content_hash": f"h{i}",
                "committed": i % 2 == 0,
                "flag_int": 1,
                "score": i + 0.5,
                "tags": ["all", f"t{i % 4}"],
                "metadata": {"lang": "en" if i % 4 else "fr", "my key": f"k{i % 2}"},
            },
            # Every chunk has "alpha", so a sparse search for it finds what the filter lets in.
            text_for_sparse=f"alpha item{i} {'beta' if i % 2 else 'gamma'}",
        )
        for i in range(n)
    ]


def must(*conds: Match | Range) -> Filter:
    return Filter(must=conds)


def test_create_records_provenance_and_is_idempotent(store: VectorStore) -> None:
    info = store.create_collection("docs", PROV)
    assert (info.name, info.provenance, info.points_count) == ("docs", PROV, 0)
    created = datetime.fromisoformat(info.created_at)
    assert created.utcoffset() is not None and created.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert store.create_collection("docs", PROV) == info
    assert store.get_collection("docs") == info
    assert [c.name for c in store.list_collections()] == ["docs"]


def test_create_with_another_provenance_conflicts(store: VectorStore) -> None:
    store.create_collection("docs", PROV)
    other = Provenance(model="other-model", dimension=16)
    with pytest.raises(Conflict) as err:
        store.create_collection("docs", other)
    for part in ("docs", "test-model", "other-model", "8", "16"):
        assert part in err.value.message
    with pytest.raises(Conflict):
        store.create_collection("docs", Provenance("test-model", DIM, document_prefix="x"))
    assert store.get_collection("docs").provenance == PROV


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".hidden",
        "_x",
        "-x",
        "a/b",
        "..",
        "../etc",
        "a\\b",
        "a b",
        "x" * 65,
        "ünï",
        "a\n",
        "a\0",
    ],
)
def test_invalid_names_are_refused(store: VectorStore, name: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        store.create_collection(name, PROV)
    assert err.value.param == "collection"
    with pytest.raises(InvalidRequest):
        store.get_collection(name)
    assert store.list_collections() == []


def test_valid_names(store: VectorStore) -> None:
    for name in ("a", "Docs-2024_v1.2", "x" * 64, "9lives"):
        assert store.create_collection(name, PROV).name == name
    assert len(store.list_collections()) == 4


def test_search_ranks_by_cosine(store: VectorStore) -> None:
    store.create_collection("c", PROV)
    store.upsert(
        "c",
        [
            Point(pid(1), unit(1, 0), {"n": 1}),  # cos 1
            Point(pid(2), unit(4, 3), {"n": 2}),  # cos 0.8 (length does not matter)
            Point(pid(3), unit(1, 1.7320508), {"n": 3}),  # cos 0.5
            Point(pid(4), unit(0, 1), {"n": 4}),  # cos 0
            Point(pid(5), unit(-1, 0), {"n": 5}),  # cos -1
        ],
    )
    hits = store.search("c", unit(2, 0), top_k=5)
    assert [h.id for h in hits] == [pid(n) for n in (1, 2, 3, 4, 5)]
    assert [h.score for h in hits] == pytest.approx([1.0, 0.8, 0.5, 0.0, -1.0], abs=1e-5)
    assert hits[1].payload == {"n": 2}
    assert [h.id for h in store.search("c", unit(0, 1), top_k=2)] == [pid(4), pid(3)]


def test_score_threshold(store: VectorStore) -> None:
    store.create_collection("c", PROV)
    store.upsert("c", [Point(pid(i), unit(1, i), {}) for i in range(5)])  # cos 1, .71, .45, ...
    hits = store.search("c", unit(1, 0), top_k=10, score_threshold=0.5)
    assert [h.id for h in hits] == [pid(0), pid(1)]
    assert all(h.score >= 0.5 for h in hits)
    assert store.search("c", unit(1, 0), top_k=10, score_threshold=1.01) == []


def test_search_finds_the_nearest_of_many(store: VectorStore) -> None:
    store.create_collection("c", PROV)
    points = docs(200)
    store.upsert("c", points)
    for target in (points[0], points[77], points[199]):
        top = store.search("c", target.vector + 0.01, top_k=3)
        assert top[0].id == target.id
        assert top[0].payload["chunk_index"] == target.payload["chunk_index"]
        assert top[0].score > top[1].score >= top[2].score


FILTER_CASES: list[tuple[str, Filter, Callable[[int], bool]]] = [
    ("match one", must(Match("doc_id", ("d1",))), lambda i: i % 3 == 1),
    ("match any", must(Match("doc_id", ("d0", "d2"))), lambda i: i % 3 != 1),
    ("match int", must(Match("chunk_index", (3, 5, 99))), lambda i: i in (3, 5)),
    ("nested key", must(Match("metadata.lang", ("fr",))), lambda i: i % 4 == 0),
    ("quoted key", must(Match("metadata.my key", ("k1",))), lambda i: i % 2 == 1),
    ("array element", must(Match("tags", ("t1",))), lambda i: i % 4 == 1),
    ("bool", must(Match("committed", (True,))), lambda i: i % 2 == 0),
    ("bool is not 1", must(Match("flag_int", (True,))), lambda i: False),
    ("float equality", must(Match("score", (2.5, 7.5))), lambda i: i in (2, 7)),
    ("mixed kinds", must(Match("chunk_index", (1, "1", True, 2.0))), lambda i: i in (1, 2)),
    ("no values", must(Match("doc_id", ())), lambda i: False),
    ("range", must(Range("chunk_index", gte=4, lt=9)), lambda i: 4 <= i < 9),
    ("open range", must(Range("score", gte=10.0)), lambda i: i >= 10),
    ("upper bound", must(Range("chunk_index", lt=3)), lambda i: i < 3),
    (
        "must_not",
        Filter(must=(Match("doc_id", ("d0",)),), must_not=(Match("metadata.lang", ("fr",)),)),
        lambda i: i % 3 == 0 and i % 4 != 0,
    ),
    ("only must_not", Filter(must_not=(Range("chunk_index", gte=2),)), lambda i: i < 2),
    ("empty filter", Filter(), lambda i: True),
]


@pytest.mark.parametrize(
    ("label", "flt", "expected"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES]
)
def test_filters(
    store: VectorStore, label: str, flt: Filter, expected: Callable[[int], bool]
) -> None:
    store.create_collection("c", PROV)
    points = docs(12)
    store.upsert("c", points)
    want = {pid(i) for i in range(12) if expected(i)}
    assert store.count("c", flt) == len(want), label
    records, _ = store.scroll("c", flt, limit=100)
    assert {r.id for r in records} == want
    hits = store.search("c", points[0].vector, top_k=12, flt=flt)
    assert {h.id for h in hits} == want


def test_bad_filter_key(store: VectorStore) -> None:
    store.create_collection("c", PROV)
    for key in ("a..b", "", 'a"b', "trailing."):
        with pytest.raises(InvalidRequest):
            store.count("c", must(Match(key, ("x",))))


def test_set_payload_by_filter_then_count(store: VectorStore) -> None:
    store.create_collection("c", PROV)
    store.upsert("c", docs(12))
    store.set_payload("c", must(Match("doc_id", ("d1",))), {"committed": "yes", "extra": {"x": 1}})
    assert store.count("c", must(Match("committed", ("yes",)))) == 4
    assert store.count("c", must(Match("extra.x", (1,)))) == 4
    records, _ = store.scroll("c", must(Match("doc_id", ("d1",))), limit=10)
    # A merge: the keys that were not set keep their values.
    assert all(r.payload["content_hash"].startswith("h") for r in records)
    assert all(r.payload["metadata"]["lang"] in ("en", "fr") for r in records)
    assert store.count("c") == 12


def test_delete_by_filter(store: VectorStore) -> None:
    store.create_collection("c", PROV)
    points = docs(12)
    store.upsert("c", points)
    store.delete("c", must(Match("doc_id", ("d0",)), Range("chunk_index", gte=6)))
    assert store.count("c") == 10
    assert store.count("c", must(Match("doc_id", ("d0",)))) == 2
    assert store.get_collection("c").points_count == 10
    assert pid(9) not in {h.id for h in store.search("c", points[9].vector, top_k=12)}
    store.delete("c", Filter())
    assert store.count("c") == 0


def test_upsert_replaces_by_id(store: VectorStore) -> None:
    store.create_collection("c", PROV)
    store.upsert("c", [Point(pid(1), unit(1, 0), {"v": 1})])
    store.upsert("c", [Point(pid(1), unit(0, 1), {"v": 2})])
    assert store.count("c") == 1
    hit = store.search("c", unit(0, 1), top_k=1)[0]
    assert (hit.id, hit.payload) == (pid(1), {"v": 2})
    assert hit.score == pytest.approx(1.0, abs=1e-5)
    store.upsert("c", [])


def test_scroll_gives_the_dense_vectors_only_when_asked(store: VectorStore) -> None:
    store.create_collection("c", PROV)
    points = docs(5)
    store.upsert("c", points)
    bare, _ = store.scroll("c", None, limit=10)
    assert all(r.vector is None for r in bare)
    full, _ = store.scroll("c", None, limit=10, with_vectors=True)
    by_id = {p.id: p for p in points}
    assert {r.id for r in full} == set(by_id)
    for r in full:
        assert r.vector is not None and r.vector.dtype == np.float32 and r.vector.shape == (DIM,)
        # cosine collections may store the vector normalised: compare directions
        want = by_id[r.id].vector / np.linalg.norm(by_id[r.id].vector)
        assert np.allclose(r.vector / np.linalg.norm(r.vector), want, atol=1e-5)
        assert r.payload == by_id[r.id].payload


def test_scroll_pages_through_every_point_once(store: VectorStore) -> None:
    store.create_collection("c", PROV)
    points = docs(25)
    store.upsert("c", list(reversed(points)))
    seen: list[str] = []
    offset: str | None = None
    pages = 0
    while True:
        records, offset = store.scroll("c", None, limit=7, offset=offset)
        assert len(records) <= 7
        seen += [r.id for r in records]
        pages += 1
        if offset is None:
            break
    assert pages == 4
    assert len(seen) == len(set(seen)) == 25
    assert set(seen) == {p.id for p in points}
    assert seen == sorted(seen, key=uuid.UUID)  # stable id order
    first, _ = store.scroll("c", None, limit=1)
    assert first[0].payload == points[0].payload

    filtered: list[str] = []
    offset = None
    flt = must(Match("doc_id", ("d2",)))
    while True:
        records, offset = store.scroll("c", flt, limit=3, offset=offset)
        filtered += [r.id for r in records]
        if offset is None:
            break
    assert sorted(filtered) == sorted(p.id for p in points if p.payload["doc_id"] == "d2")


def test_count(store: VectorStore) -> None:
    store.create_collection("c", PROV)
    assert store.count("c") == 0
    store.upsert("c", docs(10))
    assert store.count("c") == store.count("c", None) == 10
    assert store.count("c", must(Match("committed", (False,)))) == 5
    assert store.get_collection("c").points_count == 10


def calls(name: str) -> list[Callable[[VectorStore], Any]]:
    """Every collection-scoped method, bound to `name`."""
    return [
        lambda s: s.get_collection(name),
        lambda s: s.delete_collection(name),
        lambda s: s.upsert(name, [Point(pid(1), unit(1), {})]),
        lambda s: s.upsert(name, []),
        lambda s: s.set_payload(name, Filter(), {"a": 1}),
        lambda s: s.delete(name, Filter()),
        lambda s: s.count(name),
        lambda s: s.search(name, unit(1), top_k=3),
        lambda s: s.scroll(name, None, limit=3),
        lambda s: s.enable_sparse(name),
    ]


def test_missing_collection(store: VectorStore) -> None:
    for call in calls("nope"):
        with pytest.raises(CollectionNotFound) as err:
            call(store)
        assert "nope" in err.value.message


def test_delete_collection(store: VectorStore) -> None:
    store.create_collection("gone", PROV)
    store.create_collection("kept", PROV)
    store.upsert("gone", docs(5))
    store.delete_collection("gone")
    assert [c.name for c in store.list_collections()] == ["kept"]
    for call in calls("gone"):
        with pytest.raises(CollectionNotFound):
            call(store)
    # The name is free again, for any provenance.
    other = Provenance("other", 4)
    assert store.create_collection("gone", other).provenance == other
    assert store.count("gone") == 0


def test_dimension_mismatch_conflicts(store: VectorStore) -> None:
    store.create_collection("c", PROV)
    wrong = np.ones(DIM + 1, dtype=np.float32)
    with pytest.raises(Conflict) as err:
        store.upsert("c", [Point(pid(1), unit(1), {}), Point(pid(2), wrong, {})])
    assert "8" in err.value.message and "9" in err.value.message
    with pytest.raises(Conflict):
        store.search("c", wrong, top_k=1)
    assert store.count("c") == 0  # the batch was refused as a whole


def test_invalid_arguments(store: VectorStore) -> None:
    store.create_collection("c", PROV)
    with pytest.raises(InvalidRequest):
        store.upsert("c", [Point("not-a-uuid", unit(1), {})])
    nan = unit(1)
    nan[0] = np.nan
    with pytest.raises(InvalidRequest):
        store.upsert("c", [Point(pid(1), nan, {})])
    with pytest.raises(InvalidRequest):
        store.search("c", unit(1), top_k=0)
    with pytest.raises(InvalidRequest):
        store.scroll("c", None, limit=0)
    with pytest.raises(InvalidRequest):
        store.scroll("c", None, limit=5, offset="garbage")
    for payload in (
        {"a": b"bytes"},
        {"a": float("nan")},
        {"a": {1: "int key"}},
        {"a": np.int64(1)},
    ):
        with pytest.raises(InvalidRequest):
            store.upsert("c", [Point(pid(1), unit(1), payload)])
        with pytest.raises(InvalidRequest):
            store.set_payload("c", Filter(), payload)
    with pytest.raises(InvalidRequest) as err:
        store.upsert("c", [Point(pid(1), unit(1), {}, text_for_sparse=b"bytes")])  # type: ignore[arg-type]
    assert err.value.param == "text_for_sparse"
    assert store.count("c") == 0
    with pytest.raises(InvalidRequest):
        store.create_collection("d", Provenance("m", DIM, distance="dot"))
    with pytest.raises(InvalidRequest):
        store.create_collection("d", Provenance("m", 0))


def test_point_ids_are_canonical(store: VectorStore) -> None:
    store.create_collection("c", PROV)
    raw = str(uuid.uuid4()).upper()
    store.upsert("c", [Point(raw, unit(1), {})])
    assert store.search("c", unit(1), top_k=1)[0].id == raw.lower()


def test_threads(store: VectorStore) -> None:
    store.create_collection("c", PROV)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            rng = np.random.default_rng(worker)
            for batch in range(5):
                base = worker * 1000 + batch * 20
                store.upsert(
                    "c",
                    [
                        Point(pid(base + i), rng.standard_normal(DIM).astype(np.float32), {})
                        for i in range(20)
                    ],
                )
                store.search("c", rng.standard_normal(DIM).astype(np.float32), top_k=5)
                store.count("c")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count("c") == 400


# -- BM25 sparse vectors, hybrid search, grouping -------------------------------------------

# Every search mode the contract covers: dense, sparse and hybrid with each fusion.
MODES = ["dense", "sparse", "hybrid-rrf", "hybrid-dbsf", "hybrid-weighted"]
SPARSE_MODES = [m for m in MODES if m != "dense"]


def mode_args(label: str) -> dict[str, Any]:
    """search() keywords for a MODES label."""
    if label.startswith("hybrid-"):
        return {"mode": "hybrid", "fusion": label.removeprefix("hybrid-")}
    return {"mode": label}


def sparse_ids(store: VectorStore, text: str, top_k: int = 10, **kw: Any) -> list[str]:
    return [h.id for h in store.search("c", None, top_k, mode="sparse", query_text=text, **kw)]


def test_collections_record_their_bm25_config(store: VectorStore) -> None:
    assert store.create_collection("c", PROV).bm25 == Bm25Config()  # English BM25 by default
    french = Bm25Config(language="french", stemming=False, stopwords=False, avg_len=100)
    assert store.create_collection("f", PROV, bm25=french).bm25 == french
    assert store.create_collection("d", PROV, bm25=None).bm25 is None
    # Same provenance, another BM25 config: not a conflict, the collection keeps its own.
    assert store.create_collection("c", PROV, bm25=french).bm25 == Bm25Config()
    assert store.create_collection("d", PROV).bm25 is None
    listed = {i.name: i.bm25 for i in store.list_collections()}
    assert listed == {"c": Bm25Config(), "d": None, "f": french}
    assert store.get_collection("f").bm25 == french


@pytest.mark.parametrize(
    "config",
    [
        Bm25Config(language="klingon"),
        Bm25Config(language="English"),
        Bm25Config(b=1.5),
        Bm25Config(k=-1),
        Bm25Config(avg_len=0),
        Bm25Config(stemming="yes"),  # type: ignore[arg-type]
        Bm25Config(k=float("nan")),
    ],
)
def test_invalid_bm25_config_is_refused(store: VectorStore, config: Bm25Config) -> None:
    with pytest.raises(InvalidRequest) as err:
        store.create_collection("c", PROV, bm25=config)
    assert err.value.param == "bm25"
    assert store.list_collections() == []


def test_a_dense_only_collection_refuses_sparse_and_hybrid(store: VectorStore) -> None:
    store.create_collection("old", PROV, bm25=None)
    store.upsert("old", docs(6))  # their texts are ignored
    assert len(store.search("old", unit(1), top_k=10)) == 6
    for mode in ("sparse", "hybrid"):
        with pytest.raises(InvalidRequest) as err:
            store.search("old", unit(1), top_k=3, mode=mode, query_text="alpha")
        assert "'old'" in err.value.message and "create a new collection" in err.value.message
        assert err.value.param == "mode"


# Six chunks: "zeppelin" is in one, "system" in five (IDF: the rare term weighs more).
BM25_TEXTS = [
    "zeppelin report filed",
    "system report filed",
    "system check passed",
    "system update done",
    "system reboot queued",
    "The system alarm raised",
]


def bm25_corpus(store: VectorStore, config: Bm25Config | None = None) -> None:
    store.create_collection("c", PROV, **({} if config is None else {"bm25": config}))
    rng = np.random.default_rng(3)
    store.upsert(
        "c",
        [
            Point(pid(i), rng.standard_normal(DIM).astype(np.float32), {"n": i}, text)
            for i, text in enumerate(BM25_TEXTS)
        ],
    )


def test_sparse_search_ranks_by_bm25(store: VectorStore) -> None:
    bm25_corpus(store)
    assert sparse_ids(store, "zeppelin") == [pid(0)]  # the only chunk with the term
    assert sparse_ids(store, "Zeppelins!") == [pid(0)]  # lowercased and stemmed
    assert sparse_ids(store, "the") == []  # a stopword is no term
    assert sparse_ids(store, "nowhere") == []
    # IDF: "zeppelin" (1 of 6 chunks) outweighs "system" (5 of 6) at equal term frequency.
    hits = store.search("c", None, top_k=10, mode="sparse", query_text="system zeppelin")
    assert hits[0].id == pid(0)
    assert {h.id for h in hits} == {pid(i) for i in range(6)}
    assert all(hits[0].score > h.score for h in hits[1:])
    # The score is BM25: the engine's IDF times the chunk's saturated term frequency.
    (term,) = bm25.query_vector(Bm25Config(), "zeppelin").indices
    stored = bm25.document_vector(Bm25Config(), BM25_TEXTS[0])
    assert stored is not None
    tf = dict(zip(stored.indices, stored.values, strict=True))[term]
    (hit,) = store.search("c", None, top_k=3, mode="sparse", query_text="zeppelin")
    assert hit.score == pytest.approx(idf(6, 1) * tf, rel=1e-4)
    assert hit.payload == {"n": 0}


def test_bm25_tokenisation_follows_the_collection_config(store: VectorStore) -> None:
    bm25_corpus(store, Bm25Config(stemming=False, stopwords=False))
    assert sparse_ids(store, "the") == [pid(5)]  # stopwords kept
    assert sparse_ids(store, "zeppelins") == []  # no stemming
    assert sparse_ids(store, "zeppelin") == [pid(0)]


# Five chunks for the hybrid tests: the query vector is unit(1, 0), the query text
# "zeppelin harbour"; BOTH is good in both arms, DENSE and SPARSE in one arm each.
BOTH, DENSE, FILLER, SPARSE, FAR = (pid(i) for i in range(5))
HYBRID_POINTS = [
    (BOTH, unit(0.9, 0.43588989), "zeppelin harbour visit"),  # cos 0.9
    (DENSE, unit(1, 0), "nothing relevant here"),  # cos 1
    (FILLER, unit(0.6, 0.8), "plain filler words"),  # cos 0.6
    (SPARSE, unit(0, 1), "zeppelin sighting reported"),  # cos 0
    (FAR, unit(-1, 0), "other filler words"),  # cos -1
]


def hybrid_corpus(store: VectorStore) -> None:
    store.create_collection("c", PROV)
    store.upsert(
        "c",
        [Point(i, v, {"doc_id": i[-1], "committed": True}, t) for i, v, t in HYBRID_POINTS],
    )


def hybrid(store: VectorStore, top_k: int = 5, **kw: Any) -> list[Hit]:
    return store.search("c", unit(1, 0), top_k, mode="hybrid", query_text="zeppelin harbour", **kw)


def test_hybrid_rrf(store: VectorStore) -> None:
    hybrid_corpus(store)
    hits = hybrid(store, fusion="rrf")
    # Dense ranks DENSE, BOTH, FILLER, SPARSE, FAR; BM25 ranks BOTH, SPARSE: sum of 1/(2 + rank).
    assert [h.id for h in hits] == [BOTH, SPARSE, DENSE, FILLER, FAR]
    assert [h.score for h in hits] == pytest.approx(
        [1 / 3 + 1 / 2, 1 / 5 + 1 / 3, 1 / 2, 1 / 4, 1 / 6], abs=1e-6
    )
    assert [h.id for h in hybrid(store, top_k=2, fusion="rrf")] == [BOTH, SPARSE]


def idf(points: int, with_term: int) -> float:
    """Qdrant's IDF of a term in `with_term` of `points` chunks."""
    return math.log(1 + (points - with_term + 0.5) / (with_term + 0.5))


def test_hybrid_weighted(store: VectorStore) -> None:
    hybrid_corpus(store)
    # Each arm divided by its best score (dense: DENSE's 1.0, BM25: BOTH's), then weighted w and
    # 1 - w. SPARSE has cosine 0 and, of BOTH's two terms, only the commoner "zeppelin".
    share = idf(5, 2) / (idf(5, 2) + idf(5, 1))
    hits = hybrid(store, fusion="weighted")
    assert [h.id for h in hits] == [BOTH, DENSE, FILLER, SPARSE, FAR]
    assert [h.score for h in hits] == pytest.approx([0.95, 0.5, 0.3, 0.5 * share, -0.5], abs=1e-5)
    hits = hybrid(store, fusion="weighted", dense_weight=0.8)
    assert [h.score for h in hits] == pytest.approx([0.92, 0.8, 0.48, 0.2 * share, -0.8], abs=1e-5)
    dense_only = hybrid(store, fusion="weighted", dense_weight=1.0)
    assert [h.id for h in dense_only] == [DENSE, BOTH, FILLER, SPARSE, FAR]
    sparse_only = hybrid(store, fusion="weighted", dense_weight=0.0)
    assert [h.id for h in sparse_only[:2]] == [BOTH, SPARSE]
    assert [h.score for h in sparse_only] == pytest.approx([1.0, share, 0, 0, 0], abs=1e-5)


def dbsf_normalised(scores: dict[str, float]) -> dict[str, float]:
    """One arm's scores as DBSF normalises them: mean +- 3 sample standard deviations -> 0..1."""
    values = np.array(list(scores.values()))
    low, spread = values.mean() - 3 * values.std(ddof=1), 6 * values.std(ddof=1)
    return {i: float((v - low) / spread) for i, v in scores.items()}


def test_hybrid_dbsf(store: VectorStore) -> None:
    hybrid_corpus(store)
    dense = {h.id: h.score for h in store.search("c", unit(1, 0), 5)}
    sparse = {
        h.id: h.score
        for h in store.search("c", None, 5, mode="sparse", query_text="zeppelin harbour")
    }
    assert set(sparse) == {BOTH, SPARSE}
    parts = [dbsf_normalised(dense), dbsf_normalised(sparse)]
    want = {i: sum(part.get(i, 0.0) for part in parts) for i in dense}
    hits = hybrid(store, fusion="dbsf")
    assert [h.id for h in hits] == sorted(want, key=want.__getitem__, reverse=True)
    assert hits[0].id == BOTH
    assert {h.id: h.score for h in hits} == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("fusion", ["rrf", "dbsf", "weighted"])
def test_hybrid_score_threshold_applies_to_the_fused_score(store: VectorStore, fusion: str) -> None:
    hybrid_corpus(store)
    scores = [h.score for h in hybrid(store, fusion=fusion)]
    cut = (scores[1] + scores[2]) / 2
    hits = hybrid(store, fusion=fusion, score_threshold=cut)
    assert [h.score for h in hits] == pytest.approx(scores[:2])


def test_a_query_without_terms(store: VectorStore) -> None:
    hybrid_corpus(store)
    assert sparse_ids(store, "the of and") == []
    # Hybrid: the BM25 arm finds nothing, so the dense arm alone is fused.
    hits = store.search("c", unit(1, 0), 5, mode="hybrid", query_text="the", fusion="rrf")
    assert [h.id for h in hits] == [DENSE, BOTH, FILLER, SPARSE, FAR]
    hits = store.search("c", unit(1, 0), 5, mode="hybrid", query_text="", fusion="weighted")
    assert [h.score for h in hits] == pytest.approx([0.5, 0.45, 0.3, 0.0, -0.5], abs=1e-5)


@pytest.mark.parametrize("mode", SPARSE_MODES)
@pytest.mark.parametrize(
    ("label", "flt", "expected"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES]
)
def test_filters_apply_to_sparse_and_hybrid_search(
    store: VectorStore, mode: str, label: str, flt: Filter, expected: Callable[[int], bool]
) -> None:
    store.create_collection("c", PROV)
    points = docs(12)
    store.upsert("c", points)
    want = {pid(i) for i in range(12) if expected(i)}
    # "alpha" is in every chunk, and the dense arm ranks every chunk: only the filter decides.
    hits = store.search(
        "c", points[0].vector, top_k=12, flt=flt, query_text="alpha", **mode_args(mode)
    )
    assert {h.id for h in hits} == want, label


def test_delete_by_filter_removes_sparse_hits(store: VectorStore) -> None:
    store.create_collection("c", PROV)
    points = docs(12)
    store.upsert("c", points)
    store.delete("c", must(Match("doc_id", ("d0",))))
    for mode in SPARSE_MODES:
        hits = store.search("c", points[3].vector, 20, query_text="alpha item3", **mode_args(mode))
        assert len(hits) == 8 and {h.payload["doc_id"] for h in hits} == {"d1", "d2"}, mode
    assert sparse_ids(store, "item3") == []  # chunk 3 was d0's
    assert sparse_ids(store, "item4") == [pid(4)]


def test_reupsert_replaces_the_sparse_vector(store: VectorStore) -> None:
    store.create_collection("c", PROV)
    store.upsert("c", [Point(pid(1), unit(1), {"v": 1}, "zeppelin over the harbour")])
    store.upsert("c", [Point(pid(2), unit(0, 1), {"v": 2}, "submarine under the sea")])
    assert sparse_ids(store, "zeppelin") == [pid(1)]
    store.upsert("c", [Point(pid(1), unit(1), {"v": 3}, "submarine in the harbour")])
    assert sparse_ids(store, "zeppelin") == []
    assert set(sparse_ids(store, "submarine")) == {pid(1), pid(2)}
    (hit,) = store.search("c", None, 5, mode="sparse", query_text="harbour")
    assert (hit.id, hit.payload) == (pid(1), {"v": 3})
    # Without a text the point leaves sparse search, and stays in dense search.
    store.upsert("c", [Point(pid(1), unit(1), {"v": 4})])
    assert sparse_ids(store, "submarine harbour") == [pid(2)]
    assert store.search("c", unit(1), 1)[0].payload == {"v": 4}
    assert store.count("c") == 2


def test_the_commit_flag_hides_uncommitted_sparse_hits(store: VectorStore) -> None:
    store.create_collection("c", PROV)
    store.upsert(
        "c",
        [
            Point(pid(i), unit(1, i), {"doc_id": "a", "committed": False}, f"zeppelin part {i}")
            for i in range(3)
        ],
    )
    committed = must(Match("committed", (True,)))
    for mode in MODES:
        assert (
            store.search("c", unit(1), 5, committed, query_text="zeppelin", **mode_args(mode)) == []
        )
    store.set_payload("c", must(Match("doc_id", ("a",))), {"committed": True})
    for mode in MODES:
        hits = store.search("c", unit(1), 5, committed, query_text="zeppelin", **mode_args(mode))
        assert {h.id for h in hits} == {pid(0), pid(1), pid(2)}, mode
        assert all(h.payload["committed"] is True for h in hits)


def grouped_corpus(store: VectorStore) -> None:
    """Document "big": 30 chunks that beat every other in both arms; s0..s4: one chunk each;
    and the best chunk of all without a doc_id."""
    store.create_collection("c", PROV)
    big = [
        Point(pid(i), unit(1, 0.01 * i), {"doc_id": "big", "n": i}, "zeppelin harbour zeppelin")
        for i in range(30)
    ]
    small = [
        Point(
            pid(100 + j),
            unit(1, 1 + j),
            {"doc_id": f"s{j}", "n": j},
            "zeppelin " + " ".join(f"word{w}" for w in range(j + 2)),
        )
        for j in range(5)
    ]
    orphan = Point(pid(200), unit(1, 0), {"n": -1}, "zeppelin harbour zeppelin")
    store.upsert("c", [*big, *small, orphan])


@pytest.mark.parametrize("mode", MODES)
def test_group_by_document_returns_the_best_chunk_of_top_k_documents(
    store: VectorStore, mode: str
) -> None:
    grouped_corpus(store)
    args = {"query_text": "zeppelin harbour", **mode_args(mode)}
    plain = store.search("c", unit(1, 0), top_k=3, **args)
    assert {h.payload.get("doc_id") for h in plain} <= {"big", None}  # one document crowds in
    # The first round (4 chunks per wanted document) holds only "big": the search goes on.
    hits = store.search("c", unit(1, 0), top_k=3, group_by_document=True, **args)
    documents = [h.payload["doc_id"] for h in hits]
    assert len(documents) == len(set(documents)) == 3
    assert documents[0] == "big"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # Exact: the first chunk of each of the first three documents in the complete ranking.
    ranking = store.search("c", unit(1, 0), top_k=100, prefetch_limit=100, **args)
    firsts: dict[str, str] = {}
    for h in ranking:
        if "doc_id" in h.payload:
            firsts.setdefault(h.payload["doc_id"], h.id)
    assert [h.id for h in hits] == list(firsts.values())[:3]
    # Fewer documents than top_k: all of them, the chunk without a doc_id left out.
    every = store.search("c", unit(1, 0), top_k=10, group_by_document=True, **args)
    assert sorted(h.payload["doc_id"] for h in every) == ["big", "s0", "s1", "s2", "s3", "s4"]
    # With a filter, over the documents it lets in.
    flt = Filter(must_not=(Match("doc_id", ("big", "s0")),))
    hits = store.search("c", unit(1, 0), top_k=2, flt=flt, group_by_document=True, **args)
    assert len({h.payload["doc_id"] for h in hits}) == 2
    assert not {h.payload["doc_id"] for h in hits} & {"big", "s0"}


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"mode": "fuzzy"}, "mode"),
        ({"mode": "hybrid", "query_text": "x", "fusion": "max"}, "fusion"),
        ({"mode": "sparse"}, "query_text"),
        ({"mode": "hybrid"}, "query_text"),
        ({"mode": "hybrid", "query_text": "x", "vector": None}, "vector"),
        ({"vector": None}, "vector"),
        ({"mode": "hybrid", "query_text": "x", "dense_weight": 0.3}, "dense_weight"),
        ({"mode": "sparse", "query_text": "x", "dense_weight": 0.3}, "dense_weight"),
        (
            {"mode": "hybrid", "query_text": "x", "fusion": "weighted", "dense_weight": 1.5},
            "dense_weight",
        ),
        ({"mode": "hybrid", "query_text": "x", "prefetch_limit": 0}, "prefetch_limit"),
        ({"score_threshold": float("nan")}, "score_threshold"),
        ({"group_by_document": "yes"}, "group_by_document"),
        ({"mode": "sparse", "query_text": "x", "top_k": 0}, "top_k"),
    ],
)
def test_invalid_search_arguments(store: VectorStore, kwargs: dict[str, Any], param: str) -> None:
    hybrid_corpus(store)
    call: dict[str, Any] = {"vector": unit(1), "top_k": 3, **kwargs}
    with pytest.raises(InvalidRequest) as err:
        store.search("c", **call)
    assert err.value.param == param


def test_prefetch_limit_bounds_the_candidates_of_each_arm(store: VectorStore) -> None:
    hybrid_corpus(store)
    # One candidate per arm: DENSE from the dense arm, BOTH from the BM25 arm.
    hits = hybrid(store, fusion="rrf", prefetch_limit=1, top_k=1)
    assert [h.id for h in hits] == [DENSE] or [h.id for h in hits] == [BOTH]
    hits = store.search(
        "c", unit(1, 0), 5, mode="hybrid", query_text="zeppelin harbour", prefetch_limit=1
    )
    # At least top_k candidates per arm are used, so top_k hits still come back.
    assert len(hits) == 5


def test_both_adapters_rank_and_score_alike(tmp_path: Path) -> None:
    """The same points and queries give the same hits and scores on every adapter."""
    rng = np.random.default_rng(11)
    # Texts of different lengths and term counts, so that no two chunks tie in BM25 (the
    # adapters may order ties differently, and RRF scores ranks).
    points = [
        Point(
            pid(i),
            rng.standard_normal(DIM).astype(np.float32),
            {"doc_id": f"d{i % 4}", "n": i},
            " ".join(["alpha"] * (1 + i % 3) + ["beta"] * (i % 4) + [f"w{j}" for j in range(i)]),
        )
        for i in range(30)
    ]
    stores = {name: make(tmp_path / name) for name, make in ADAPTERS.items()}
    try:
        for s in stores.values():
            s.create_collection("c", PROV)
            s.upsert("c", points)
        for mode in MODES:
            for query in ("alpha", "beta w3", "alpha beta w12"):
                for grouped in (False, True):
                    # Sorted by score, then id: RRF gives different chunks equal scores.
                    results = [
                        sorted(
                            (-round(h.score, 4), h.id)
                            for h in s.search(
                                "c",
                                points[5].vector,
                                30,
                                query_text=query,
                                group_by_document=grouped,
                                **mode_args(mode),
                            )
                        )
                        for s in stores.values()
                    ]
                    assert results[0] == results[1], (mode, query, grouped)
    finally:
        for s in stores.values():
            s.close()


# -- upgrading a dense-only collection in place (enable_sparse) -----------------------------


def chunk_points(n: int, start: int = 0) -> list[Point]:
    """Chunks as the pipeline stores them: the text in the payload, a commit flag, a doc id."""
    rng = np.random.default_rng(5 + start)
    return [
        Point(
            pid(i),
            rng.standard_normal(DIM).astype(np.float32),
            {
                "doc_id": f"d{i % 4}",
                "chunk_index": i,
                "committed": i % 3 != 0,
                "metadata": {"lang": "fr" if i % 5 == 0 else "en"},
                # No two lengths are equal, so no two BM25 scores tie (ties may rank either way).
                "text": " ".join(
                    ["alpha"] * (1 + i % 3) + ["beta"] * (i % 4) + [f"w{i}"] + ["pad"] * i
                ),
            },
            text_for_sparse=None,  # a dense-only collection ignores it anyway
        )
        for i in range(start, start + n)
    ]


def everything(store: VectorStore, name: str) -> dict[str, dict[str, Any]]:
    """Every point's payload by id."""
    found: dict[str, dict[str, Any]] = {}
    offset = None
    while True:
        page, offset = store.scroll(name, None, limit=64, offset=offset)
        found.update((r.id, r.payload) for r in page)
        if offset is None:
            return found


def dense_results(store: VectorStore, name: str, queries: list[np.ndarray]) -> list[Any]:
    """Dense hits (id, score) of each query, unfiltered and with two filters."""
    flts = [None, must(Match("committed", (True,))), must(Match("metadata.lang", ("fr",)))]
    return [
        [(h.id, h.score) for h in store.search(name, q, top_k=8, flt=flt)]
        for q in queries
        for flt in flts
    ]


def assert_same_hits(before: list[Any], after: list[Any]) -> None:
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):
        assert [i for i, _ in new] == [i for i, _ in old]
        assert [s for _, s in new] == pytest.approx([s for _, s in old], abs=1e-5)


def test_enable_sparse_upgrades_a_dense_only_collection_in_place(store: VectorStore) -> None:
    points = chunk_points(40)
    no_text = Point(pid(100), unit(1), {"doc_id": "x", "committed": True})
    odd_text = Point(pid(101), unit(0, 1), {"doc_id": "x", "committed": True, "text": 7})
    store.create_collection("old", PROV, bm25=None)
    store.upsert("old", [*points, no_text, odd_text])
    queries = [p.vector + 0.05 for p in points[::7]] + [unit(1), unit(0, 1)]
    before = dense_results(store, "old", queries)
    payloads = everything(store, "old")
    created = store.get_collection("old").created_at

    seen: list[int] = []
    info = store.enable_sparse("old", progress=seen.append)

    assert info.bm25 == Bm25Config() and info.points_count == 42
    assert (info.provenance, info.created_at) == (PROV, created)
    assert sum(seen) == 42
    assert store.get_collection("old") == info
    assert {i.name: i.bm25 for i in store.list_collections()} == {"old": Bm25Config()}
    # Dense search, payloads, filters and commit flags are as they were.
    assert_same_hits(before, dense_results(store, "old", queries))
    assert everything(store, "old") == payloads
    assert store.count("old", must(Match("committed", (True,)))) == 2 + sum(
        1 for i in range(40) if i % 3 != 0
    )
    # Sparse and hybrid search now work, on the BM25 vectors of the payload texts.
    (hit,) = store.search("old", None, 5, mode="sparse", query_text="w17")
    assert hit.id == pid(17) and hit.payload == payloads[pid(17)]
    betas = store.search("old", None, 50, mode="sparse", query_text="beta")
    assert {h.id for h in betas} == {pid(i) for i in range(40) if i % 4}
    # Points without a string text have no BM25 vector: never a sparse hit.
    alphas = store.search("old", None, 50, mode="sparse", query_text="alpha")
    assert {h.id for h in alphas} == {p.id for p in points}
    committed = store.search(
        "old", None, 50, must(Match("committed", (True,))), mode="sparse", query_text="alpha"
    )
    assert {h.id for h in committed} == {pid(i) for i in range(40) if i % 3 != 0}
    hits = store.search("old", points[17].vector, 3, mode="hybrid", query_text="w17")
    assert hits[0].id == pid(17)
    # New writes get BM25 vectors from their text like in any collection with BM25.
    store.upsert("old", [Point(pid(200), unit(1), {"doc_id": "y"}, "zeppelin")])
    assert [h.id for h in store.search("old", None, 3, mode="sparse", query_text="zeppelin")] == [
        pid(200)
    ]
    store.set_payload("old", must(Match("doc_id", ("d1",))), {"committed": False})
    assert store.count("old", must(Match("doc_id", ("d1",)), Match("committed", (True,)))) == 0
    # Idempotent: a collection with BM25 keeps its config and its vectors.
    again = store.enable_sparse("old", Bm25Config(language="french"))
    assert again.bm25 == Bm25Config() and again.points_count == 43
    assert [h.id for h in store.search("old", None, 3, mode="sparse", query_text="w17")] == [
        pid(17)
    ]


def test_an_upgraded_collection_ranks_like_one_made_with_bm25(store: VectorStore) -> None:
    points = chunk_points(30)
    store.create_collection("old", PROV, bm25=None)
    store.upsert("old", points)
    store.enable_sparse("old")
    store.create_collection("new", PROV)
    store.upsert("new", [Point(p.id, p.vector, p.payload, p.payload["text"]) for p in points])
    for mode in MODES:
        for query in ("alpha", "beta w3", "alpha beta w12"):
            results = [
                sorted(
                    (-round(h.score, 4), h.id)
                    for h in store.search(
                        name, points[5].vector, 30, query_text=query, **mode_args(mode)
                    )
                )
                for name in ("old", "new")
            ]
            assert results[0] == results[1], (mode, query)


def test_enable_sparse_follows_the_given_bm25_config(store: VectorStore) -> None:
    store.create_collection("old", PROV, bm25=None)
    store.upsert("old", [Point(pid(1), unit(1), {"text": "The zeppelins"})])
    raw = Bm25Config(stemming=False, stopwords=False)
    assert store.enable_sparse("old", raw).bm25 == raw
    assert [h.id for h in store.search("old", None, 3, mode="sparse", query_text="the")] == [pid(1)]
    assert store.search("old", None, 3, mode="sparse", query_text="zeppelin") == []


def test_enable_sparse_on_an_empty_collection(store: VectorStore) -> None:
    store.create_collection("empty", PROV, bm25=None)
    assert store.enable_sparse("empty", progress=lambda n: pytest.fail("no points")).bm25
    store.upsert("empty", [Point(pid(1), unit(1), {}, "zeppelin")])
    assert store.search("empty", None, 3, mode="sparse", query_text="zeppelin")[0].id == pid(1)


def test_enable_sparse_refuses_bad_arguments(store: VectorStore) -> None:
    store.create_collection("old", PROV, bm25=None)
    with pytest.raises(InvalidRequest) as err:
        store.enable_sparse("old", Bm25Config(language="klingon"))
    assert err.value.param == "bm25"
    with pytest.raises(InvalidRequest) as err:
        store.enable_sparse("../x")
    assert err.value.param == "collection"
    assert store.get_collection("old").bm25 is None


def test_writes_during_enable_sparse_are_kept(store: VectorStore) -> None:
    """Writes made while the upgrade runs (from its progress callback, between two pages) land
    in the upgraded collection, upserts with their BM25 vectors."""
    points = chunk_points(700)  # several pages
    store.create_collection("old", PROV, bm25=None)
    store.upsert("old", points)
    fresh = [
        Point(pid(1000 + i), unit(1, i), {"doc_id": "new"}, f"zeppelin z{i}") for i in range(3)
    ]
    pages: list[int] = []

    def write_meanwhile(done: int) -> None:
        pages.append(done)
        if len(pages) == 1:
            store.upsert("old", fresh)
            store.delete("old", must(Match("doc_id", ("d0",))))
            store.set_payload("old", must(Match("doc_id", ("d1",))), {"committed": True})
            # A point of a later page rewritten with new text and a new vector.
            store.upsert("old", [Point(pid(650), unit(0, 0, 1), {"doc_id": "d2", "text": "x"})])

    store.enable_sparse("old", progress=write_meanwhile)
    assert len(pages) > 1
    assert store.count("old") == 700 - 175 + 3
    assert store.count("old", must(Match("doc_id", ("d1",)), Match("committed", (False,)))) == 0
    zeppelins = store.search("old", None, 10, mode="sparse", query_text="zeppelin")
    assert {h.id for h in zeppelins} == {p.id for p in fresh}
    assert store.search("old", None, 5, mode="sparse", query_text="w4") == []  # d0: deleted
    (hit,) = store.search("old", unit(0, 0, 1), 1)
    assert hit.id == pid(650) and hit.payload["text"] == "x"
    # The rewritten point is indexed by its new text only.
    assert store.search("old", None, 5, mode="sparse", query_text="w650") == []


# -- aliases (blue/green re-indexing) ---------------------------------------------------------


def test_alias_is_created_repointed_and_deleted(store: VectorStore) -> None:
    store.create_collection("kb__v1", PROV)
    store.create_collection("kb__v2", PROV)
    assert store.aliases() == {}
    store.set_alias("kb", "kb__v1")
    assert store.aliases() == {"kb": "kb__v1"}
    store.set_alias("kb", "kb__v2")  # the switch: one step
    assert store.aliases() == {"kb": "kb__v2"}
    # The raw store lists collections only; an alias is no collection of its own.
    assert [c.name for c in store.list_collections()] == ["kb__v1", "kb__v2"]
    store.delete_alias("kb")
    assert store.aliases() == {}
    assert store.count("kb__v2") == 0  # the collection stays
    with pytest.raises(CollectionNotFound):
        store.delete_alias("kb")


def test_alias_refuses_a_collection_name_and_a_missing_target(store: VectorStore) -> None:
    store.create_collection("a", PROV)
    store.create_collection("b", PROV)
    with pytest.raises(Conflict):
        store.set_alias("a", "b")
    with pytest.raises(CollectionNotFound):
        store.set_alias("kb", "missing")
    with pytest.raises(InvalidRequest):
        store.set_alias("../kb", "a")
    store.set_alias("kb", "a")
    with pytest.raises(Conflict):
        store.create_collection("kb", PROV)  # a collection cannot take an alias's name
    assert store.aliases() == {"kb": "a"}


def test_deleting_a_collection_drops_its_aliases(store: VectorStore) -> None:
    store.create_collection("a", PROV)
    store.create_collection("b", PROV)
    store.set_alias("kb", "a")
    store.set_alias("other", "b")
    store.delete_collection("a")
    assert store.aliases() == {"other": "b"}
