"""The Milvus adapter on real Milvus Lite files: the settings, persistence across a reopen and a
SIGKILL, what it refuses, and its filters and scores next to Qdrant's."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient
from qdrant_client import QdrantClient

from rag_appliance.errors import Conflict, InvalidRequest, SettingsError
from rag_appliance.settings import Settings, load_settings
from rag_appliance.store.base import (
    Bm25Config,
    Filter,
    FusionMethod,
    Match,
    Point,
    Range,
    SearchMode,
    VectorStore,
)
from rag_appliance.store.milvus import MilvusStore
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from rag_appliance.store.qdrant_server import QdrantServerStore
from rag_appliance.store.registry import build_store
from tests.integration.store.edge_data import (
    PROV,
    kill_after_done,
    points,
    run_child,
    sparse_ids,
)

COMMITTED = Filter(must=(Match("committed", (True,)),))


def settings_for(tmp_path: Path, **store: object) -> Settings:
    base = load_settings()
    return base.model_copy(
        update={"data_dir": tmp_path, "store": base.store.model_copy(update=store)}
    )


def test_without_a_url_milvus_lite_lives_under_data_dir(tmp_path: Path) -> None:
    store = build_store(settings_for(tmp_path, backend="milvus"))
    try:
        assert isinstance(store, MilvusStore)
        assert (tmp_path / "milvus" / "milvus.db").is_dir()
        store.create_collection("docs", PROV)
    finally:
        store.close()
    reopened = build_store(settings_for(tmp_path, backend="milvus"))
    try:
        assert [c.name for c in reopened.list_collections()] == ["docs"]
    finally:
        reopened.close()


def test_an_unreachable_server_is_a_one_line_settings_error(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, backend="milvus", url="http://127.0.0.1:1", timeout_s=2)
    with pytest.raises(SettingsError) as err:
        build_store(settings)
    message = str(err.value)
    assert message.startswith("store.url:") and "127.0.0.1:1" in message and "\n" not in message


def test_a_server_at_store_url(tmp_path: Path) -> None:
    """store.url: here Milvus Lite's own gRPC server in a child process, spoken to over TCP."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "milvus_lite", "server", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--data-dir", str(tmp_path / "srv")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        settings = settings_for(tmp_path, backend="milvus", url=f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while True:
            try:
                store = build_store(settings)
                break
            except SettingsError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        try:
            assert isinstance(store, MilvusStore)
            store.create_collection("docs", PROV)
            data = points(0, 50)
            store.upsert("docs", data)
            store.set_payload("docs", Filter(must=(Match("doc_id", ("d2",)),)), {"committed": True})
            assert store.count("docs", COMMITTED) == 10
            hits = store.search(
                "docs", data[7].vector, 3, COMMITTED, mode="hybrid", query_text="item7"
            )
            assert hits[0].id == data[7].id
            assert [c.name for c in store.list_collections()] == ["docs"]
        finally:
            store.close()
        assert not (tmp_path / "milvus").exists()
    finally:
        server.terminate()
        server.wait(30)


def test_whole_rows_are_written_back_without_partial_updates(tmp_path: Path) -> None:
    """A server before Milvus 2.6 has no partial upsert: set_payload and enable_sparse then
    read every field and upsert the whole rows, vectors included."""
    store = MilvusStore.lite(tmp_path / "m.db")
    try:
        store._conn.partial_updates = False
        data = points(0, 300)
        store.create_collection("docs", PROV)
        store.upsert("docs", data)
        before = [h.id for h in store.search("docs", None, 5, mode="sparse", query_text="topic3")]
        store.set_payload("docs", Filter(must=(Match("doc_id", ("d1",)),)), {"committed": True})
        assert store.count("docs", COMMITTED) == 60
        assert store.search("docs", data[41].vector, 1)[0].id == data[41].id
        after = [h.id for h in store.search("docs", None, 5, mode="sparse", query_text="topic3")]
        assert after == before
        store.create_collection("old", PROV, bm25=None)
        store.upsert(
            "old",
            [replace(p, payload={**p.payload, "text": f"word{i}"}) for i, p in enumerate(data)],
        )
        store.enable_sparse("old")
        assert sparse_ids(store, "old", "word42") == [data[42].id]
        assert store.search("old", data[42].vector, 1)[0].id == data[42].id
    finally:
        store.close()


def test_a_text_with_too_many_terms_is_refused_by_name(tmp_path: Path) -> None:
    store = MilvusStore.lite(tmp_path / "m.db")
    try:
        store.create_collection("docs", PROV)
        text = " ".join(f"t{i}" for i in range(5000))
        with pytest.raises(InvalidRequest) as err:
            store.upsert("docs", [replace(points(0, 1)[0], text_for_sparse=text)])
        assert "milvus backend" in err.value.message and err.value.param == "text_for_sparse"
        assert store.count("docs") == 0
    finally:
        store.close()


def test_a_lite_file_held_by_another_process_is_a_settings_error(tmp_path: Path) -> None:
    child = run_child(
        """
        import sys, time
        from pathlib import Path
        from rag_appliance.store.milvus import MilvusStore

        store = MilvusStore.lite(Path(sys.argv[1]))
        print("done", flush=True)
        time.sleep(60)
        """,
        str(tmp_path / "m.db"),
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "done"
        with pytest.raises(SettingsError) as err:
            MilvusStore.lite(tmp_path / "m.db")
        assert "Milvus Lite cannot open" in str(err.value) and "\n" not in str(err.value)
    finally:
        child.kill()
        child.wait(30)


def test_reopen_finds_data_provenance_and_bm25(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = MilvusStore.lite(path)
    config = Bm25Config(language="french", stopwords=False)
    created = store.create_collection("docs", PROV, bm25=config)
    store.create_collection("dense", PROV, bm25=None)
    data = points(0, 300)
    store.upsert("docs", data)
    store.set_payload("docs", Filter(must=(Match("doc_id", ("d1",)),)), {"committed": True})
    store.close()

    reopened = MilvusStore.lite(path)
    try:
        assert reopened.get_collection("docs") == replace(created, points_count=300)
        assert reopened.get_collection("dense").bm25 is None
        assert reopened.create_collection("docs", PROV).created_at == created.created_at
        assert reopened.count("docs", COMMITTED) == 60
        assert reopened.search("docs", data[123].vector, top_k=1)[0].id == data[123].id
        assert sparse_ids(reopened, "docs", "item123") == [data[123].id]
        hits = reopened.search(
            "docs", data[121].vector, 100, COMMITTED, mode="hybrid", query_text="item121 topic2"
        )
        assert hits[0].id == data[121].id and len(hits) == 60
    finally:
        reopened.close()


def test_sigkill_mid_index_leaves_uncommitted_chunks_invisible(tmp_path: Path) -> None:
    """The commit-flag protocol across a SIGKILL: d-old's chunks were committed, d-new's were
    being upserted (committed false) when the process died."""
    child = run_child(
        """
        import sys
        from pathlib import Path
        from dataclasses import replace
        from rag_appliance.store.base import Filter, Match
        from rag_appliance.store.milvus import MilvusStore
        from tests.integration.store.edge_data import PROV, points

        def doc(start, stop, doc_id):
            return [
                replace(p, payload={**p.payload, "doc_id": doc_id, "committed": False})
                for p in points(start, stop)
            ]

        store = MilvusStore.lite(Path(sys.argv[1]))
        store.create_collection("docs", PROV)
        store.upsert("docs", doc(0, 200, "old"))
        store.set_payload("docs", Filter(must=(Match("doc_id", ("old",)),)), {"committed": True})
        for start in range(200, 500, 100):
            store.upsert("docs", doc(start, start + 100, "new"))
        print("done", flush=True)
        import time; time.sleep(60)
        """,
        str(tmp_path / "m.db"),
    )
    kill_after_done(child)

    store = MilvusStore.lite(tmp_path / "m.db")
    try:
        data = points(0, 500)
        assert store.count("docs") == 500
        assert store.count("docs", COMMITTED) == 200
        for mode in ("dense", "sparse", "hybrid"):
            hits = store.search(
                "docs", data[450].vector, 500, COMMITTED, mode=mode, query_text="item450 topic2"
            )
            assert hits and {h.payload["doc_id"] for h in hits} == {"old"}, mode
        assert sparse_ids(store, "docs", "item450") == [data[450].id]  # there, uncommitted
    finally:
        store.close()


def test_sigkill_at_any_moment_leaves_whole_writes(tmp_path: Path) -> None:
    """Killed at an arbitrary moment of a write loop, the file reopens, and each upsert and each
    set_payload (one Lite batch each) is there entirely or not at all."""
    child = run_child(
        """
        import sys, itertools
        from pathlib import Path
        from dataclasses import replace
        from rag_appliance.store.base import Filter, Match
        from rag_appliance.store.milvus import MilvusStore
        from tests.integration.store.edge_data import PROV, points

        store = MilvusStore.lite(Path(sys.argv[1]))
        store.create_collection("docs", PROV)
        for n in itertools.count():
            chunks = [
                replace(p, payload={"doc_id": f"doc{n}", "committed": False})
                for p in points(50 * n, 50 * n + 50)
            ]
            store.upsert("docs", chunks)
            one = Filter(must=(Match("doc_id", (f"doc{n}",)),))
            store.set_payload("docs", one, {"committed": True})
            if n == 3:
                print("done", flush=True)
        """,
        str(tmp_path / "m.db"),
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "done"
    time.sleep(0.7)
    child.kill()
    child.wait(30)

    store = MilvusStore.lite(tmp_path / "m.db")
    try:
        total = store.count("docs")
        docs = total // 50 + 1
        assert total >= 200
        for n in range(docs):
            one = Filter(must=(Match("doc_id", (f"doc{n}",)),))
            assert store.count("docs", one) in (0, 50)
            committed = Filter(must=(*one.must, *COMMITTED.must))
            assert store.count("docs", committed) in (0, 50)
    finally:
        store.close()


def test_a_collection_made_outside_the_appliance_is_a_conflict(tmp_path: Path) -> None:
    store = MilvusStore.lite(tmp_path / "m.db")
    try:
        raw = MilvusClient(uri=str(tmp_path / "m.db"))
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("v", DataType.FLOAT_VECTOR, dim=4)
        raw.create_collection("rag_foreign", schema=schema)
        raw.close()
        with pytest.raises(Conflict) as err:
            store.get_collection("foreign")
        assert "not created by rag-appliance" in err.value.message
        with pytest.raises(Conflict):
            store.create_collection("foreign", PROV)
        assert store.list_collections() == []
    finally:
        store.close()


def test_set_payload_on_thousands_of_points(tmp_path: Path) -> None:
    """The commit flip of a few thousand 384-dimensional chunks: read back and re-upserted."""
    store = MilvusStore.lite(tmp_path / "m.db")
    try:
        prov = replace(PROV, dimension=384)
        store.create_collection("big", prov)
        rng = np.random.default_rng(0)
        batch = [
            Point(
                str(uuid.UUID(int=i + 1)),
                rng.standard_normal(384).astype(np.float32),
                {
                    "doc_id": f"d{i // 20}",
                    "chunk_index": i % 20,
                    "committed": False,
                    "text": "x" * 800,
                },
                f"chunk {i} about topic{i % 7}",
            )
            for i in range(3000)
        ]
        for start in range(0, 3000, 256):
            store.upsert("big", batch[start : start + 256])
        started = time.perf_counter()
        store.set_payload("big", Filter(must=(Match("committed", (False,)),)), {"committed": True})
        elapsed = time.perf_counter() - started
        assert store.count("big", COMMITTED) == 3000
        assert elapsed < 30, elapsed  # ~1-3 s on a laptop core
        (hit,) = store.search("big", batch[7].vector, 1, COMMITTED)
        assert hit.id == batch[7].id and hit.payload["committed"] is True
    finally:
        store.close()


# -- next to Qdrant ---------------------------------------------------------

MARK = "\ue000"
# Values and keys meant to break a filter expression, or the payload's boolean encoding.
TRICKY = ['say "hi"', "back\\slash", "line\nbreak", "tab\tand\rcr", '") or id != ("', "ü ключ"]
TRICKY += [MARK + "T", MARK + MARK + "x", MARK, "", "%", "' or 1 == 1 or '"]


def agreement_points() -> list[Point]:
    """Regular chunks, chunks whose mirrored keys hold what their columns cannot, and keys and
    values that need quoting."""
    payloads: list[dict[str, Any]] = [
        {"doc_id": f"d{i % 3}", "chunk_index": i, "committed": i % 2 == 0, "content_hash": f"h{i}"}
        for i in range(9)
    ]
    payloads += [
        {"doc_id": ["d1", "x"], "chunk_index": 1, "committed": True},
        {"doc_id": 5, "committed": [True, "no"]},
        {"doc_id": None, "committed": "yes", "chunk_index": "3"},
        {"committed": False, "chunk_index": 2.5, "content_hash": "h" * 70000},
        {"doc_id": "d0", "chunk_index": 2**40, "committed": 1, "flag": True},
        {"doc_id": "d2", "chunk_index": -7, "committed": None, "flag": 0},
    ]
    payloads += [
        {"text": value, "nested": {key: value}, "list": [value, 1]}
        for key, value in zip(
            ["a\\b", "a\nb", "]", "[", " or ", "ключ", "x y"] * 2, TRICKY, strict=False
        )
    ]
    rng = np.random.default_rng(1)
    return [
        Point(str(uuid.UUID(int=i + 1)), rng.standard_normal(16).astype(np.float32), p)
        for i, p in enumerate(payloads)
    ]


def m(key: str, *values: Any) -> Match:
    return Match(key, values)


CONDITIONS: list[Match | Range] = [
    m("doc_id", "d1"),
    m("doc_id", "d0", "x"),
    m("doc_id", 5),
    m("doc_id", 5, "d2"),
    m("committed", True),
    m("committed", False),
    m("committed", "yes"),
    m("committed", "no", True),
    m("committed", 1),
    m("chunk_index", 1, 2**40),
    m("chunk_index", "3"),
    m("chunk_index", 2.5, -7),
    m("chunk_index", 3.0),
    m("content_hash", "h" * 70000),
    m("content_hash", "h3"),
    m("flag", True),
    m("flag", 0),
    m("flag", False),
    Range("chunk_index", gte=2, lt=6),
    Range("chunk_index", gte=2.5),
    Range("chunk_index", lt=0),
    Range("committed", gte=0),
    Range("doc_id", gte=0),
    *(m("text", v) for v in TRICKY),
    *(m("list", v) for v in TRICKY),
    m("list", 1),
    m("nested.a\\b", TRICKY[0]),
    m("nested.a\nb", TRICKY[1]),
    m("nested.]", TRICKY[2]),
    m("nested. or ", TRICKY[4]),
    m("nested.ключ", TRICKY[5]),
    m("nested.x y", TRICKY[6]),
]
AGREEING = [Filter(must=(c,)) for c in CONDITIONS]
# must_not of each, but for a Range over a key that holds a list somewhere: on Milvus Lite that
# row is left out (three-valued logic, milvus_filters), checked below.
LISTED_RANGES = [Range("committed", gte=0), Range("doc_id", gte=0)]
AGREEING += [Filter(must_not=f.must) for f in AGREEING if f.must[0] not in LISTED_RANGES]
AGREEING += [
    Filter(must=(m("doc_id", "d0", "d1"),), must_not=(Range("chunk_index", gte=3),)),
    Filter(must=(Range("chunk_index", gte=0),), must_not=(m("committed", True),)),
]


def test_filters_agree_with_qdrant(tmp_path: Path) -> None:
    """Next to qdrant-client's local mode: Qdrant's filter semantics without its payload
    indexes (the embedded store's integer index on chunk_index leaves float values at that key
    unmatched, and it refuses a backslash in a key)."""
    data = agreement_points()
    stores: dict[str, VectorStore] = {
        "qdrant": QdrantServerStore(QdrantClient(":memory:")),
        "milvus": MilvusStore.lite(tmp_path / "m.db"),
    }
    try:
        for s in stores.values():
            s.create_collection("c", replace(PROV, dimension=16))
            s.upsert("c", data)
        for flt in AGREEING:
            qdrant, milvus = (
                {r.id for r in s.scroll("c", flt, limit=100)[0]} for s in stores.values()
            )
            assert milvus == qdrant, flt
            assert stores["milvus"].count("c", flt) == len(qdrant), flt
        # The documented differences: Milvus has no "any element" Range, and an integer
        # Match holds for an equal float.
        listed = Filter(must=(Range("list", gte=0, lt=2),))
        assert stores["qdrant"].count("c", listed) > 0 == stores["milvus"].count("c", listed)
        for cond in LISTED_RANGES:
            qdrant_count, milvus_count = (
                s.count("c", Filter(must_not=(cond,))) for s in stores.values()
            )
            assert milvus_count == qdrant_count - 1, cond  # the row holding a list
    finally:
        for s in stores.values():
            s.close()


def test_scores_agree_with_the_embedded_qdrant_store(tmp_path: Path) -> None:
    """The contract's test_both_adapters_rank_and_score_alike, Milvus next to qdrant-edge."""
    rng = np.random.default_rng(11)
    data = [
        Point(
            str(uuid.UUID(int=i + 1)),
            rng.standard_normal(16).astype(np.float32),
            {"doc_id": f"d{i % 4}", "n": i},
            " ".join(["alpha"] * (1 + i % 3) + ["beta"] * (i % 4) + [f"w{j}" for j in range(i)]),
        )
        for i in range(30)
    ]
    stores: list[VectorStore] = [
        QdrantEdgeStore(tmp_path / "edge"),
        MilvusStore.lite(tmp_path / "m.db"),
    ]
    try:
        for s in stores:
            s.create_collection("c", replace(PROV, dimension=16))
            s.upsert("c", data)
        modes: list[tuple[SearchMode, FusionMethod]] = [
            ("dense", "rrf"),
            ("sparse", "rrf"),
            ("hybrid", "rrf"),
            ("hybrid", "dbsf"),
            ("hybrid", "weighted"),
        ]
        for mode, fusion in modes:
            for query in ("alpha", "beta w3", "alpha beta w12"):
                for grouped in (False, True):
                    edge, milvus = (
                        sorted(
                            (-h.score, h.id)
                            for h in s.search(
                                "c",
                                data[5].vector,
                                30,
                                mode=mode,
                                fusion=fusion,
                                query_text=query,
                                group_by_document=grouped,
                            )
                        )
                        for s in stores
                    )
                    assert [i for _, i in milvus] == [i for _, i in edge], (mode, fusion, query)
                    assert [s for s, _ in milvus] == pytest.approx(
                        [s for s, _ in edge], rel=1e-5, abs=1e-6
                    )
    finally:
        for s in stores:
            s.close()
