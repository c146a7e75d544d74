"""The pgvector store on a real PostgreSQL: reopen, SIGKILL mid-write, the embedded server's
lifecycle, and the one-line errors of a bad configuration."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import psutil
import psycopg
import pytest
from psycopg import sql

from rag_appliance.errors import Conflict, InvalidRequest, SettingsError
from rag_appliance.settings import load_settings
from rag_appliance.store.base import Bm25Config, Filter, Match, Point, Provenance
from rag_appliance.store.pg_server import EmbeddedPostgres
from rag_appliance.store.pgvector import PgVectorStore, from_settings
from tests.integration.store.edge_data import DIM, PROV, points, run_child, sparse_ids
from tests.unit.store.pg_fixture import pg_store, server

CHILD = """
import itertools, sys
from pathlib import Path
from rag_appliance.store.pg_server import EmbeddedPostgres
from rag_appliance.store.pgvector import PgVectorStore
from tests.integration.store.edge_data import PROV
from tests.integration.store.test_pgvector import version_points

embedded = EmbeddedPostgres.start(Path(sys.argv[1]))
store = PgVectorStore(embedded.conninfo, server=embedded)
store.create_collection("docs", PROV)
for version in itertools.count():
    for doc in range(4):
        store.replace_documents("docs", [f"d{doc}"], version_points(doc, version))
        print(doc, version, flush=True)
"""


def version_points(doc: int, version: int) -> list[Point]:
    """Document d{doc} at `version`: 3 to 9 chunks, each marked with the version."""
    rng = np.random.default_rng(version * 10 + doc)
    return [
        Point(
            str(uuid.uuid5(uuid.NAMESPACE_URL, f"d{doc}/{i}")),
            rng.standard_normal(DIM).astype(np.float32),
            {"doc_id": f"d{doc}", "chunk_index": i, "version": version, "committed": True},
            text_for_sparse=f"chunk{i} version{version} shared",
        )
        for i in range(3 + version % 7)
    ]


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    """A temporary directory for an embedded server's data. Not under pytest's tmp_path: run as
    root, pgserver runs PostgreSQL as the user `pgserver`, which must traverse every parent,
    and pytest keeps its base directory private (0700)."""
    path = Path(tempfile.mkdtemp(prefix="rag-pg-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def postgres_processes(pgdata: Path) -> list[psutil.Process]:
    """The live processes of the server on `pgdata` (its postmaster and the postmaster's
    children), zombies excluded."""
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return []
    try:
        master = psutil.Process(int(pid_file.read_text().split()[0]))
        if master.status() == psutil.STATUS_ZOMBIE or "postgres" not in master.name():
            return []
        return [master, *master.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def embedded_store(pgdata: Path) -> PgVectorStore:
    started = EmbeddedPostgres.start(pgdata)
    return PgVectorStore(started.conninfo, server=started)


def test_reopen_keeps_data_and_close_stops_the_server(pg_dir: Path) -> None:
    settings = load_settings().model_copy(
        update={
            "data_dir": pg_dir / "data",
            "store": load_settings().store.model_copy(update={"backend": "pgvector"}),
        }
    )
    store = from_settings(settings)
    pgdata = pg_dir / "data" / "postgres"
    assert postgres_processes(pgdata)
    config = Bm25Config(language="french", stopwords=False)
    created = store.create_collection("docs", PROV, bm25=config)
    store.create_collection("dense", PROV, bm25=None)
    data = points(0, 300)
    store.upsert("docs", data)
    store.set_payload("docs", Filter(must=(Match("doc_id", ("d1",)),)), {"committed": True})
    store.close()
    assert postgres_processes(pgdata) == []  # close() stopped the embedded server

    reopened = from_settings(settings)
    try:
        assert reopened.get_collection("docs") == replace(created, points_count=300)
        assert reopened.get_collection("dense").bm25 is None
        assert reopened.create_collection("docs", PROV).created_at == created.created_at
        with pytest.raises(Conflict):
            reopened.create_collection("docs", Provenance("other-model", DIM))
        committed = Filter(must=(Match("committed", (True,)),))
        assert reopened.count("docs", committed) == 60
        assert reopened.search("docs", data[123].vector, top_k=1)[0].id == data[123].id
        assert sparse_ids(reopened, "docs", "item123") == [data[123].id]
        hits = reopened.search(
            "docs", data[121].vector, 100, committed, mode="hybrid", query_text="item121 topic2"
        )
        assert hits[0].id == data[121].id and len(hits) == 60
    finally:
        reopened.close()
    assert postgres_processes(pgdata) == []


def test_sigkill_of_app_and_server_mid_write_leaves_whole_documents(pg_dir: Path) -> None:
    pgdata = pg_dir / "postgres"
    child = run_child(CHILD, str(pgdata))
    assert child.stdout is not None
    acked: dict[str, int] = {}
    for _ in range(40):  # replaces acknowledged (committed) before the kill
        number, version = child.stdout.readline().split()
        acked[f"d{number}"] = int(version)
    # Everything at once, as a power cut would: the app mid-transaction, the postmaster and
    # its backends (PostgreSQL recovers from its WAL on the next start).
    victims = [psutil.Process(child.pid), *postgres_processes(pgdata)]
    for process in victims:
        os.kill(process.pid, signal.SIGKILL)
    child.wait(30)
    psutil.wait_procs(victims, timeout=30)

    store = embedded_store(pgdata)  # a new server: crash recovery, then the same data
    try:
        assert store.get_collection("docs").provenance == PROV
        for doc in range(4):
            flt = Filter(must=(Match("doc_id", (f"d{doc}",)),))
            records, _ = store.scroll("docs", flt, limit=100)
            versions = {r.payload["version"] for r in records}
            assert len(versions) == 1, (doc, versions)  # never half old, half new
            (version,) = versions
            assert version >= acked.get(f"d{doc}", 0)  # acknowledged writes survive
            assert sorted(r.payload["chunk_index"] for r in records) == list(range(3 + version % 7))
            hits = store.search("docs", None, 50, flt, mode="sparse", query_text="shared")
            assert len(hits) == len(records)
    finally:
        store.close()
    assert postgres_processes(pgdata) == []  # the dead app's handle did not keep it running


def test_unreachable_url_is_one_line_naming_the_setting() -> None:
    settings = load_settings().model_copy(
        update={
            "store": load_settings().store.model_copy(
                update={
                    "backend": "pgvector",
                    "url": "postgresql://app:s3cret@127.0.0.1:9/rag",
                    "timeout_s": 2,
                }
            )
        }
    )
    with pytest.raises(SettingsError) as err:
        from_settings(settings)
    message = str(err.value)
    assert message.startswith("store.url: cannot connect to PostgreSQL")
    assert "\n" not in message and "s3cret" not in message


def test_unknown_role_is_one_line_naming_the_setting() -> None:
    conninfo = server().conninfo.replace("postgres:@", "nobody:@", 1)
    with pytest.raises(SettingsError) as err:
        PgVectorStore(conninfo, timeout=5)
    message = str(err.value)
    assert message.startswith("store.url:") and "nobody" in message and "\n" not in message


def test_a_database_without_pgvector_is_one_line_naming_the_setting() -> None:
    name = f"noext_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server().conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(name)
            )
        )
    try:
        # Not a superuser: it may not create the (untrusted) extension.
        conninfo = server().conninfo.replace("postgres:@/postgres", f"{name}:@/{name}", 1)
        with pytest.raises(SettingsError) as err:
            PgVectorStore(conninfo, timeout=5)
        message = str(err.value)
        assert message.startswith("store.url:") and "pgvector" in message
        assert "CREATE EXTENSION vector" in message and "\n" not in message
    finally:
        with psycopg.connect(server().conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.fixture
def pg() -> Iterator[PgVectorStore]:
    store = pg_store()
    yield store
    store.close()


def test_percent_signs_and_quotes_in_filters_and_payloads(pg: PgVectorStore) -> None:
    pg.create_collection("c", PROV)
    payload = {"doc_id": "100%s", "k": "a%b'c\"d\\e", "committed": True}
    vector = np.ones(DIM, dtype=np.float32)
    pg.upsert("c", [Point(str(uuid.UUID(int=1)), vector, payload, "50% off %s")])
    flt = Filter(must=(Match("doc_id", ("100%s",)), Match("k", ("a%b'c\"d\\e",))))
    assert pg.count("c", flt) == 1
    assert pg.scroll("c", flt, 5)[0][0].payload == payload
    (hit,) = pg.search("c", vector, 3, flt, mode="hybrid", query_text="50% off")
    assert hit.payload == payload
    pg.set_payload("c", flt, {"x": "%s%"})
    pg.delete("c", Filter(must=(Match("x", ("%s%",)),)))
    assert pg.count("c") == 0


def test_nul_characters(pg: PgVectorStore) -> None:
    pg.create_collection("c", PROV)
    vector = np.ones(DIM, dtype=np.float32)
    with pytest.raises(InvalidRequest) as err:
        pg.upsert("c", [Point(str(uuid.UUID(int=1)), vector, {"text": "a\x00b"})])
    assert err.value.param == "payload" and "pgvector" in err.value.message
    # In the text for BM25, a NUL separates words.
    pg.upsert("c", [Point(str(uuid.UUID(int=1)), vector, {}, "zeppelin\x00harbour")])
    assert sparse_ids(pg, "c", "harbour") == [str(uuid.UUID(int=1))]


def test_dimensions_beyond_hnsw_and_beyond_pgvector(pg: PgVectorStore) -> None:
    wide = Provenance("wide-model", 2048)
    pg.create_collection("wide", wide)  # no HNSW index: searched exactly
    rng = np.random.default_rng(0)
    data = [
        Point(str(uuid.UUID(int=i + 1)), rng.standard_normal(2048).astype(np.float32), {})
        for i in range(20)
    ]
    pg.upsert("wide", data)
    assert pg.search("wide", data[7].vector, 1)[0].id == data[7].id
    with pytest.raises(InvalidRequest) as err:
        pg.create_collection("huge", Provenance("huge-model", 16001))
    assert err.value.param == "dimension"
    assert [c.name for c in pg.list_collections()] == ["wide"]


def test_languages_postgresql_lacks_are_refused(pg: PgVectorStore) -> None:
    with pytest.raises(InvalidRequest) as err:
        pg.create_collection("zh", PROV, bm25=Bm25Config(language="chinese"))
    assert err.value.param == "bm25" and "chinese" in err.value.message
    assert pg.list_collections() == []
    # A language with a stemmer but no PostgreSQL stopword list keeps its stopwords.
    greek = Bm25Config(language="greek")
    assert pg.create_collection("el", PROV, bm25=greek).bm25 == greek


def test_identifiers_split_into_words(pg: PgVectorStore) -> None:
    pg.create_collection("c", PROV)
    vector = np.ones(DIM, dtype=np.float32)
    pg.upsert("c", [Point(str(uuid.UUID(int=1)), vector, {}, "call os.path.join(a, b)")])
    assert sparse_ids(pg, "c", "join paths") == [str(uuid.UUID(int=1))]
