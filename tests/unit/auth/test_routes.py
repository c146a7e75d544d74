"""Every /v1 route with scoped keys: a read-only key cannot write, and a key scoped to team-a-*
cannot list, read, search, chat over, upload to or delete team-b (existing or not)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rag_appliance.app import create_app
from rag_appliance.settings import load_settings
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.conftest import make_services
from tests.fakes import FakeEncoder, FakeGenerator
from tests.unit.auth.conftest import ADMIN, HASHED, KEYS, RO_A, RW_A, bearer

DOCS = [
    {"id": "goats", "text": "Goats graze on the windy island all summer."},
    {"id": "bees", "text": "Bees dance to tell the hive where the flowers are."},
]
MESSAGES = [{"role": "user", "content": "What do goats do?"}]
SEEDED = ("team-a-docs", "team-a-x", "team-b")
# team-b exists, team-c does not: a key outside its scopes gets the same 403 for both.
OUTSIDE = ("team-b", "team-c")
TEAM_A_KEYS = pytest.mark.parametrize("key", [RW_A, RO_A], ids=["read-write", "read-only"])


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Iterator[TestClient]:
    settings = load_settings(
        # Throttling is tested on its own (test_middleware.py); here many wrong keys are sent.
        server={"api_keys": KEYS, "ui": False, "auth_max_failures": 1000},
        rag={"default_collection": "team-b"},
    )
    store = QdrantEdgeStore(tmp_path_factory.mktemp("auth") / "db")
    generator = FakeGenerator(max_model_len=4096)
    services = make_services(settings, FakeEncoder(), store, generator, tokenizer=tokenizer)
    with TestClient(create_app(settings, services)) as c:
        for name in SEEDED:
            r = c.post("/v1/index", json={"collection": name, "documents": DOCS}, headers=A)
            assert r.status_code == 200, r.text
        yield c


A = bearer(ADMIN)


def denied(response: Any, name: str, param: str = "collection") -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("permission_denied", param)
    assert f"'{name}'" in error["message"]


def names(client: TestClient, key: str) -> set[str]:
    r = client.get("/v1/collections", headers=bearer(key))
    assert r.status_code == 200, r.text
    return {c["id"] for c in r.json()["data"]}


# Reads -------------------------------------------------------------------------------------


@TEAM_A_KEYS
def test_list_collections_shows_only_the_scope(client: TestClient, key: str) -> None:
    assert names(client, key) >= {"team-a-docs", "team-a-x"}
    assert not {n for n in names(client, key) if not n.startswith("team-a-")}
    assert names(client, ADMIN) >= set(SEEDED)
    assert names(client, HASHED) == {"team-a-docs"}  # the hashed key: one exact name


@TEAM_A_KEYS
@pytest.mark.parametrize("name", OUTSIDE)
def test_get_collection(client: TestClient, key: str, name: str) -> None:
    assert client.get("/v1/collections/team-a-docs", headers=bearer(key)).status_code == 200
    denied(client.get(f"/v1/collections/{name}", headers=bearer(key)), name)


@TEAM_A_KEYS
@pytest.mark.parametrize("name", OUTSIDE)
def test_list_documents(client: TestClient, key: str, name: str) -> None:
    ok = client.get("/v1/collections/team-a-docs/documents", headers=bearer(key))
    assert ok.status_code == 200 and len(ok.json()["data"]) == 2
    denied(client.get(f"/v1/collections/{name}/documents", headers=bearer(key)), name)


@TEAM_A_KEYS
@pytest.mark.parametrize("name", OUTSIDE)
def test_get_document(client: TestClient, key: str, name: str) -> None:
    ok = client.get("/v1/collections/team-a-docs/documents/goats", headers=bearer(key))
    assert ok.status_code == 200
    denied(client.get(f"/v1/collections/{name}/documents/goats", headers=bearer(key)), name)


@TEAM_A_KEYS
@pytest.mark.parametrize("name", OUTSIDE)
def test_search(client: TestClient, key: str, name: str) -> None:
    body = {"collection": "team-a-docs", "query": "goats", "filter": {"lang": "en"}}
    assert client.post("/v1/search", json=body, headers=bearer(key)).status_code == 200
    # A filter narrows within the one collection; it never widens what the key reaches.
    denied(client.post("/v1/search", json=body | {"collection": name}, headers=bearer(key)), name)


@TEAM_A_KEYS
@pytest.mark.parametrize("name", OUTSIDE)
def test_chat(client: TestClient, key: str, name: str) -> None:
    body = {"messages": MESSAGES, "rag": {"collection": "team-a-docs"}}
    ok = client.post("/v1/chat/completions", json=body, headers=bearer(key))
    assert ok.status_code == 200, ok.text
    bad = body | {"rag": {"collection": name}}
    denied(
        client.post("/v1/chat/completions", json=bad, headers=bearer(key)), name, "rag.collection"
    )
    streamed = bad | {"stream": True}
    denied(
        client.post("/v1/chat/completions", json=streamed, headers=bearer(key)),
        name,
        "rag.collection",
    )


@TEAM_A_KEYS
def test_chat_through_a_rag_alias_over_the_default_collection(client: TestClient, key: str) -> None:
    body = {"model": "rag", "messages": MESSAGES}  # rag.default_collection is team-b
    denied(
        client.post("/v1/chat/completions", json=body, headers=bearer(key)),
        "team-b",
        "rag.collection",
    )
    assert client.post("/v1/chat/completions", json=body, headers=A).status_code == 200


@TEAM_A_KEYS
@pytest.mark.parametrize("name", OUTSIDE)
def test_completions(client: TestClient, key: str, name: str) -> None:
    body = {"prompt": "What do goats do?", "rag": {"collection": "team-a-docs"}}
    ok = client.post("/v1/completions", json=body, headers=bearer(key))
    assert ok.status_code == 200, ok.text
    bad = body | {"rag": {"collection": name}}
    denied(client.post("/v1/completions", json=bad, headers=bearer(key)), name, "rag.collection")
    alias = {"model": "rag", "prompt": "What do goats do?"}
    denied(
        client.post("/v1/completions", json=alias, headers=bearer(key)), "team-b", "rag.collection"
    )


@TEAM_A_KEYS
def test_missing_in_scope_is_404_not_403(client: TestClient, key: str) -> None:
    r = client.get("/v1/collections/team-a-missing", headers=bearer(key))
    assert r.status_code == 404, r.text
    search = {"collection": "team-a-missing", "query": "goats"}
    assert client.post("/v1/search", json=search, headers=bearer(key)).status_code == 404


# Writes ------------------------------------------------------------------------------------


def index(client: TestClient, key: str, name: str) -> Any:
    return client.post(
        "/v1/index", json={"collection": name, "documents": DOCS}, headers=bearer(key)
    )


def upload(client: TestClient, key: str, name: str) -> Any:
    files = [("files", ("notes.txt", b"Llamas hum softly.", "text/plain"))]
    return client.post(
        "/v1/index/upload", data={"collection": name}, files=files, headers=bearer(key)
    )


@pytest.mark.parametrize("name", OUTSIDE)
def test_index(client: TestClient, name: str) -> None:
    denied(index(client, RW_A, name), name)
    denied(index(client, RO_A, "team-a-docs"), "team-a-docs")  # read-only, in scope
    assert "read-only" in index(client, RO_A, "team-a-docs").json()["error"]["message"]
    assert index(client, RW_A, "team-a-docs").status_code == 200
    assert "team-c" not in names(client, ADMIN)  # nothing was created on the way


@pytest.mark.parametrize("name", OUTSIDE)
def test_upload(client: TestClient, name: str) -> None:
    denied(upload(client, RW_A, name), name)
    denied(upload(client, RO_A, "team-a-docs"), "team-a-docs")
    r = upload(client, RW_A, "team-a-docs")
    assert r.status_code == 200 and r.json()["files"][0]["status"] in ("indexed", "unchanged"), (
        r.text
    )


@pytest.mark.parametrize("name", OUTSIDE)
def test_delete_document(client: TestClient, name: str) -> None:
    path = f"/v1/collections/{name}/documents/bees"
    denied(client.delete(path, headers=bearer(RW_A)), name)
    denied(
        client.delete("/v1/collections/team-a-x/documents/bees", headers=bearer(RO_A)), "team-a-x"
    )
    assert client.get("/v1/collections/team-b/documents/bees", headers=A).status_code == 200


@pytest.mark.parametrize("name", OUTSIDE)
def test_enable_sparse(client: TestClient, name: str) -> None:
    denied(client.post(f"/v1/collections/{name}/sparse", headers=bearer(RW_A)), name)
    denied(client.post("/v1/collections/team-a-docs/sparse", headers=bearer(RO_A)), "team-a-docs")
    assert (
        client.post("/v1/collections/team-a-docs/sparse", headers=bearer(RW_A)).status_code == 200
    )


@pytest.mark.parametrize("name", OUTSIDE)
def test_delete_collection(client: TestClient, name: str) -> None:
    denied(client.delete(f"/v1/collections/{name}", headers=bearer(RW_A)), name)
    denied(client.delete("/v1/collections/team-a-x", headers=bearer(RO_A)), "team-a-x")
    assert "team-b" in names(client, ADMIN)


def test_read_write_manages_its_own_collections(client: TestClient) -> None:
    assert index(client, RW_A, "team-a-new").status_code == 200  # created in scope
    doc = "/v1/collections/team-a-new/documents/goats"
    assert client.delete(doc, headers=bearer(RW_A)).json()["deleted"] is True
    assert client.delete("/v1/collections/team-a-new", headers=bearer(RW_A)).status_code == 200
    assert "team-a-new" not in names(client, ADMIN)


def test_admin_reaches_everything(client: TestClient) -> None:
    assert client.get("/v1/collections/team-b", headers=A).status_code == 200
    body = {"collection": "team-b", "query": "bees"}
    assert client.post("/v1/search", json=body, headers=A).status_code == 200


# Routes without a collection ---------------------------------------------------------------


@pytest.mark.parametrize("key", [RO_A, HASHED, ADMIN])
def test_any_valid_key_embeds_and_lists_models(client: TestClient, key: str) -> None:
    r = client.post("/v1/embeddings", json={"input": "goats"}, headers=bearer(key))
    assert r.status_code == 200
    assert client.get("/v1/models", headers=bearer(key)).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/collections"),
        ("GET", "/v1/collections/team-b"),
        ("DELETE", "/v1/collections/team-b"),
        ("POST", "/v1/search"),
        ("POST", "/v1/index"),
        ("POST", "/v1/index/upload"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/completions"),
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
        ("POST", "/v1/rerank"),
        ("POST", "/rerank"),
        ("GET", "/v1/no-such-route"),  # unknown routes too: nothing is open by omission
    ],
)
def test_every_route_needs_a_valid_key(client: TestClient, method: str, path: str) -> None:
    for headers in ({}, bearer("wrong"), {"Authorization": f"Basic {ADMIN}"}):
        r = client.request(method, path, headers=headers)
        assert r.status_code == 401, (path, headers, r.text)
        assert r.json()["error"]["code"] == "invalid_api_key"
        assert r.headers["www-authenticate"] == "Bearer"
