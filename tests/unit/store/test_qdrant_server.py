"""The qdrant-client adapter: what the contract suite cannot show.

Two kinds of client stand behind the adapter here, and neither is a Qdrant server:

- qdrant-client's pure-Python `:memory:` mode (as in test_contract.py), for the prefix and the
  provenance metadata. That mode ignores payload indexes (it warns "Payload indexes have no
  effect") and reports a missing collection with a ValueError, not a REST 404;
- FakeQdrantServer, a stand-in for the REST client that answers with responses recorded from a
  Qdrant server (status, headers and JSON body, raised as the REST client raises them), for the
  REST error mapping and the payload indexes.
"""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from rag_appliance.errors import CollectionNotFound, Conflict, InvalidRequest
from rag_appliance.store.base import Bm25Config, Point, Provenance
from rag_appliance.store.qdrant_server import QdrantServerStore
from tests.unit.store.test_contract import DIM, PROV, calls, pid, unit

# -- recorded REST answers ------------------------------------------------------------------


def recorded(status: int, error: str, time: float = 8.225e-06) -> UnexpectedResponse:
    """What qdrant-client raises for a Qdrant error answer (UnexpectedResponse.for_response)."""
    body = json.dumps({"status": {"error": error}, "time": time}, separators=(",", ":"))
    response = httpx.Response(
        status,
        headers={"content-type": "application/json", "content-length": str(len(body))},
        content=body.encode(),
    )
    exc = UnexpectedResponse.for_response(response)
    assert isinstance(exc, UnexpectedResponse)
    return exc


def missing(name: str) -> UnexpectedResponse:
    """Any request on a collection that does not exist (qdrant/qdrant#2842)."""
    return recorded(404, f"Not found: Collection `{name}` doesn't exist!")


def already_exists(name: str) -> UnexpectedResponse:
    """PUT /collections/<name> when it exists (409 since Qdrant 1.8, qdrant/qdrant#3422)."""
    return recorded(409, f"Wrong input: Collection `{name}` already exists!")


WRONG_DIMENSION = recorded(400, "Wrong input: Vector dimension error: expected dim: 8, got 9")
INTERNAL = recorded(500, "Service internal error: task panicked", time=0.0)


class FakeQdrantServer:
    """A fake QdrantClient(url=...): collections with their metadata and payload schema.

    A missing collection is the recorded 404; `fail(method, exc)` makes the method's next call
    raise `exc`; `stale_exists` makes the next collection_exists calls answer False (a replica
    that has not seen another one's create yet).
    """

    init_options: dict[str, Any] = {"url": "http://qdrant:6333"}

    def __init__(self) -> None:
        self.collections: dict[str, dict[str, Any]] = {}
        self.indexes: dict[str, dict[str, models.PayloadSchemaType]] = {}
        self.sparse: dict[str, Any] = {}
        self.failures: dict[str, list[Exception]] = {}
        self.calls: list[str] = []
        self.stale_exists = 0

    def fail(self, method: str, exc: Exception) -> None:
        self.failures.setdefault(method, []).append(exc)

    def _request(self, method: str, name: str | None = None) -> None:
        self.calls.append(method)
        if self.failures.get(method):
            raise self.failures[method].pop(0)
        if name is not None and name not in self.collections:
            raise missing(name)

    def get_aliases(self) -> models.CollectionsAliasesResponse:
        self._request("get_aliases")
        return models.CollectionsAliasesResponse(aliases=[])  # the alias cases: contract suite

    def collection_exists(self, name: str) -> bool:
        self._request("collection_exists")
        if self.stale_exists:
            self.stale_exists -= 1
            return False
        return name in self.collections

    def create_collection(
        self, name: str, vectors_config: Any, metadata: Any, sparse_vectors_config: Any = None
    ) -> bool:
        self._request("create_collection")
        if name in self.collections:
            raise already_exists(name)
        self.collections[name] = metadata
        self.sparse[name] = sparse_vectors_config
        self.indexes[name] = {}
        return True

    def get_collection(self, name: str) -> Any:
        self._request("get_collection", name)
        return SimpleNamespace(
            config=SimpleNamespace(metadata=self.collections[name]),
            payload_schema=dict(self.indexes[name]),
        )

    def get_collections(self) -> Any:
        self._request("get_collections")
        return SimpleNamespace(collections=[SimpleNamespace(name=n) for n in self.collections])

    def create_payload_index(self, name: str, key: str, field_schema: Any, wait: bool) -> None:
        self._request("create_payload_index", name)
        self.indexes[name][key] = field_schema

    def delete_collection(self, name: str) -> bool:
        self._request("delete_collection", name)
        del self.collections[name]
        return True

    def count(self, name: str, **_: Any) -> Any:
        self._request("count", name)
        return SimpleNamespace(count=0)

    def upsert(self, name: str, **_: Any) -> None:
        self._request("upsert", name)

    def set_payload(self, name: str, *_: Any, **__: Any) -> None:
        self._request("set_payload", name)

    def delete(self, name: str, **_: Any) -> None:
        self._request("delete", name)

    def query_points(self, name: str, **_: Any) -> Any:
        self._request("query_points", name)
        return SimpleNamespace(points=[])

    def scroll(self, name: str, **_: Any) -> tuple[list[Any], None]:
        self._request("scroll", name)
        return [], None

    def close(self) -> None:
        pass


@pytest.fixture
def server() -> FakeQdrantServer:
    return FakeQdrantServer()


@pytest.fixture
def store(server: FakeQdrantServer) -> QdrantServerStore:
    return QdrantServerStore(cast(QdrantClient, server))


# -- REST error mapping ---------------------------------------------------------------------


def test_a_404_is_collection_not_found(store: QdrantServerStore) -> None:
    for call in calls("nope"):
        with pytest.raises(CollectionNotFound) as err:
            call(store)
        assert "nope" in err.value.message
        assert err.value.param == "collection"


def test_a_collection_deleted_elsewhere_is_not_found_and_forgotten(
    server: FakeQdrantServer, store: QdrantServerStore
) -> None:
    store.create_collection("docs", PROV)
    assert store.get_collection("docs").provenance == PROV  # provenance now cached
    other = QdrantServerStore(cast(QdrantClient, server))  # another replica
    other.delete_collection("docs")
    with pytest.raises(CollectionNotFound):
        store.upsert("docs", [Point(pid(1), unit(1), {})])  # the 404 comes from the upsert
    new = Provenance("other-model", 4)
    other.create_collection("docs", new)
    # The 404 dropped the cached provenance: the recreated collection's is read back.
    assert store.get_collection("docs").provenance == new


def test_other_error_statuses_propagate(server: FakeQdrantServer, store: QdrantServerStore) -> None:
    store.create_collection("docs", PROV)
    server.fail("upsert", WRONG_DIMENSION)
    with pytest.raises(UnexpectedResponse) as err:
        store.upsert("docs", [Point(pid(1), unit(1), {})])
    assert err.value.status_code == 400
    server.fail("count", INTERNAL)
    with pytest.raises(UnexpectedResponse) as err:
        store.count("docs")
    assert err.value.status_code == 500
    assert "task panicked" in err.value.structured()["status"]["error"]
    # The failed calls dropped the cached provenance: the next call reads it again.
    server.calls.clear()
    store.count("docs")
    assert server.calls == ["get_collection", "count"]


def test_a_create_race_is_settled_by_provenance(
    server: FakeQdrantServer, store: QdrantServerStore
) -> None:
    QdrantServerStore(cast(QdrantClient, server)).create_collection("docs", PROV)
    server.stale_exists = 1  # we saw no collection; the create gets the recorded 409
    assert store.create_collection("docs", PROV).provenance == PROV
    assert server.calls.count("create_collection") == 2
    server.stale_exists = 1
    with pytest.raises(Conflict) as err:
        store.create_collection("docs", Provenance("other-model", 16))
    assert "test-model" in err.value.message and "other-model" in err.value.message


def test_a_failed_create_propagates(server: FakeQdrantServer, store: QdrantServerStore) -> None:
    server.fail("create_collection", INTERNAL)
    with pytest.raises(UnexpectedResponse) as err:
        store.create_collection("docs", PROV)
    assert err.value.status_code == 500
    assert server.collections == {}


def test_listing_skips_a_collection_deleted_meanwhile(
    server: FakeQdrantServer, store: QdrantServerStore
) -> None:
    store.create_collection("gone", PROV)
    store.create_collection("kept", PROV)
    server.fail("count", missing("gone"))  # deleted between the listing and its count
    assert [c.name for c in store.list_collections()] == ["kept"]


def test_payload_indexes_are_created_once(
    server: FakeQdrantServer, store: QdrantServerStore
) -> None:
    store.create_collection("docs", PROV)
    assert server.indexes["docs"] == {
        "doc_id": models.PayloadSchemaType.KEYWORD,
        "content_hash": models.PayloadSchemaType.KEYWORD,
        "chunk_index": models.PayloadSchemaType.INTEGER,
        "committed": models.PayloadSchemaType.BOOL,
    }
    del server.indexes["docs"]["committed"]  # e.g. a collection from an older version
    server.calls.clear()
    store.create_collection("docs", PROV)
    assert server.calls.count("create_payload_index") == 1
    assert server.indexes["docs"]["committed"] == models.PayloadSchemaType.BOOL


# -- qdrant-client's :memory: mode ------------------------------------------------------------


def test_memory_mode_says_not_found_with_a_value_error() -> None:
    """The message the adapter maps for the local client (a server answers 404 instead)."""
    client = QdrantClient(":memory:")
    with pytest.raises(ValueError, match=r"^Collection nope not found"):
        client.count("nope")
    with pytest.raises(CollectionNotFound):
        QdrantServerStore(client).count("nope")


def test_memory_mode_index_warnings_are_silenced() -> None:
    store = QdrantServerStore(QdrantClient(":memory:"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store.create_collection("docs", PROV)


def test_prefix_namespaces_collections() -> None:
    client = QdrantClient(":memory:")
    a = QdrantServerStore(client, prefix="app1_")
    b = QdrantServerStore(client, prefix="app2_")
    a.create_collection("docs", PROV)
    assert [c.name for c in a.list_collections()] == ["docs"]
    assert b.list_collections() == []
    with pytest.raises(CollectionNotFound):
        b.count("docs")
    assert client.collection_exists("app1_docs")
    with pytest.raises(InvalidRequest):
        QdrantServerStore(client, prefix="../")


def test_provenance_lives_in_collection_metadata() -> None:
    client = QdrantClient(":memory:")
    QdrantServerStore(client).create_collection("docs", PROV)
    # A second store object (another replica) reads the same provenance from Qdrant.
    info = QdrantServerStore(client).get_collection("docs")
    assert info.provenance == PROV
    metadata = client.get_collection("docs").config.metadata or {}
    assert metadata["rag_appliance"]["model"] == "test-model"


def test_foreign_collections_are_refused() -> None:
    client = QdrantClient(":memory:")
    client.create_collection(
        "foreign", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    )
    store = QdrantServerStore(client)
    assert store.list_collections() == []
    with pytest.raises(Conflict):
        store.create_collection("foreign", PROV)
    with pytest.raises(Conflict):
        store.count("foreign")


def test_from_url_builds_a_remote_client() -> None:
    store = QdrantServerStore.from_url("https://127.0.0.1:1", "secret", timeout=2.5)
    options = store._client.init_options
    assert (options["url"], options["api_key"], options["timeout"]) == (
        "https://127.0.0.1:1",
        "secret",
        3,  # whole seconds, rounded up
    )
    store.close()


# -- BM25 sparse vectors ----------------------------------------------------------------------


def test_bm25_config_lives_in_collection_metadata() -> None:
    client = QdrantClient(":memory:")
    german = Bm25Config(language="german", stopwords=False)
    QdrantServerStore(client).create_collection("docs", PROV, bm25=german)
    # Another replica reads the config back, and the collection has the IDF sparse vector.
    assert QdrantServerStore(client).get_collection("docs").bm25 == german
    config = client.get_collection("docs").config
    assert (config.metadata or {})["rag_appliance"]["bm25"]["language"] == "german"
    sparse = config.params.sparse_vectors or {}
    assert sparse["bm25"].modifier == models.Modifier.IDF
    QdrantServerStore(client).create_collection("dense", PROV, bm25=None)
    assert not client.get_collection("dense").config.params.sparse_vectors


def test_collections_from_before_sparse_vectors_stay_dense_only() -> None:
    client = QdrantClient(":memory:")
    # What this adapter wrote before BM25: an unnamed dense vector, metadata without "bm25".
    client.create_collection(
        "old",
        vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
        metadata={
            "rag_appliance": {
                "format": 1,
                "model": "test-model",
                "dimension": DIM,
                "distance": "cosine",
                "document_prefix": "passage: ",
                "created_at": "2024-01-01T00:00:00Z",
            }
        },
    )
    store = QdrantServerStore(client)
    info = store.create_collection("old", PROV)  # the same model: no 409, nothing changes
    assert (info.provenance, info.bm25, info.created_at) == (PROV, None, "2024-01-01T00:00:00Z")
    store.upsert("old", [Point(pid(1), unit(1), {"a": 1}, text_for_sparse="zeppelin")])
    assert store.search("old", unit(1), top_k=1)[0].id == pid(1)
    with pytest.raises(InvalidRequest) as err:
        store.search("old", unit(1), top_k=1, mode="sparse", query_text="zeppelin")
    assert "'old'" in err.value.message


def test_a_server_without_the_feature_refuses_by_name(
    server: FakeQdrantServer, store: QdrantServerStore
) -> None:
    store.create_collection("docs", PROV)
    assert server.sparse["docs"]["bm25"].modifier == models.Modifier.IDF
    # Not recorded: the shape of a Qdrant 400, with a message an older server might give.
    refusal = recorded(400, "Format error in JSON body: unknown variant `formula`")
    server.fail("query_points", refusal)
    with pytest.raises(InvalidRequest) as err:
        store.search("docs", unit(1), top_k=3, mode="hybrid", query_text="x", fusion="dbsf")
    assert "qdrant_server" in err.value.message and "unknown variant" in err.value.message
    assert "'dbsf'" in err.value.message and err.value.param == "fusion"
    # A dense search's 400 is not about these features: it propagates as before.
    server.fail("query_points", refusal)
    with pytest.raises(UnexpectedResponse):
        store.search("docs", unit(1), top_k=3)


# -- enable_sparse ---------------------------------------------------------------------------


def test_enable_sparse_needs_named_vector_creation(
    server: FakeQdrantServer, store: QdrantServerStore
) -> None:
    store.create_collection("docs", PROV, bm25=None)
    # This fake has no create_vector_name, like a qdrant-client before 1.18.
    with pytest.raises(InvalidRequest) as err:
        store.enable_sparse("docs")
    assert "1.18" in err.value.message and "qdrant-client" in err.value.message
    # A Qdrant before 1.18 has no such route. Not recorded: actix's bare 404 for it.
    bare_404 = UnexpectedResponse(404, "Not Found", b"", httpx.Headers())

    def create_vector_name(name: str, *_: Any, **__: Any) -> None:
        server._request("create_vector_name", name)
        raise bare_404

    server.create_vector_name = create_vector_name  # type: ignore[attr-defined]
    with pytest.raises(InvalidRequest) as err:
        store.enable_sparse("docs")
    assert "server answered 404" in err.value.message and "1.18" in err.value.message
    assert "update_collection" not in server.calls
    assert store.get_collection("docs").bm25 is None


def test_other_replicas_see_an_upgrade(monkeypatch: pytest.MonkeyPatch) -> None:
    client = QdrantClient(":memory:")
    a, b = QdrantServerStore(client), QdrantServerStore(client)
    a.create_collection("docs", PROV, bm25=None)
    text = "zeppelin harbour"
    b.upsert("docs", [Point(pid(1), unit(1), {"text": text}, text_for_sparse=text)])
    assert b.get_collection("docs").bm25 is None  # b caches the dense-only metadata
    assert a.enable_sparse("docs").bm25 == Bm25Config()
    # b re-reads a dense-only collection's metadata once it is a few seconds old.
    monkeypatch.setattr("rag_appliance.store.server_meta.DENSE_META_TTL_S", 0.0)
    b.upsert("docs", [Point(pid(2), unit(0, 1), {}, text_for_sparse="zeppelin sighting")])
    hits = b.search("docs", None, 5, mode="sparse", query_text="zeppelin")
    assert {h.id for h in hits} == {pid(1), pid(2)}


def test_a_point_deleted_during_enable_sparse_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    client = QdrantClient(":memory:")
    store = QdrantServerStore(client)
    store.create_collection("docs", PROV, bm25=None)
    store.upsert("docs", [Point(pid(i), unit(1, i), {"text": f"zeppelin z{i}"}) for i in range(5)])
    real = client.update_vectors

    def delete_first(name: str, points: list[models.PointVectors], **kw: Any) -> Any:
        # Another writer deletes a chunk between the upgrade's scroll and its update.
        client.delete(name, points_selector=models.PointIdsList(points=[points[0].id]))
        return real(name, points=points, **kw)

    monkeypatch.setattr(client, "update_vectors", delete_first)
    assert store.enable_sparse("docs").bm25 == Bm25Config()
    hits = store.search("docs", None, 10, mode="sparse", query_text="zeppelin")
    assert {h.id for h in hits} == {pid(i) for i in range(1, 5)}
