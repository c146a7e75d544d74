"""The VectorStore contract, run against every adapter on a real engine (no mocks).

qdrant_edge runs the Qdrant engine itself. qdrant_server runs on qdrant-client's pure-Python
`:memory:` mode, not on a Qdrant server: that mode ignores payload indexes and reports a missing
collection with a ValueError where a server answers a REST 404, so what is server-specific (the
404 mapping, with recorded responses) is tested in test_qdrant_server.py.

A new adapter is one more entry in ADAPTERS; test_every_backend_runs_the_contract keeps it so.
"""

from __future__ import annotations

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
from rag_appliance.store.base import (
    Filter,
    Match,
    Point,
    Provenance,
    Range,
    VectorStore,
)
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from rag_appliance.store.qdrant_server import QdrantServerStore
from rag_appliance.store.registry import BACKENDS

DIM = 8
PROV = Provenance(model="test-model", dimension=DIM, document_prefix="passage: ")

# backend name (as in the registry) -> a fresh store under a temporary directory
ADAPTERS: dict[str, Callable[[Path], VectorStore]] = {
    "qdrant_edge": lambda tmp: QdrantEdgeStore(tmp / "store"),
    "qdrant_server": lambda tmp: QdrantServerStore(QdrantClient(":memory:")),
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
    """n points: doc d{i%3}, chunk i, nested metadata, tags, a bool and a float."""
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
