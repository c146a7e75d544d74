"""POST /v1/feedback over the app (fake models, a real embedded store): ids on searches and
answers, the feedback object, every refusal as an OpenAI error, and nothing logged by a refusal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rag_appliance.app import create_app
from rag_appliance.feedback.log import log_dir, log_files, read_records
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.conftest import make_services, make_settings
from tests.fakes import FakeEncoder, FakeGenerator

ADMIN, TEAM_A, TEAM_B = "admin-key", "team-a-key", "team-b-key"
KEYS: list[Any] = [
    ADMIN,
    {"key": TEAM_A, "role": "read-only", "collections": ["team-a*"], "name": "ann"},
    {"key": TEAM_B, "role": "read-only", "collections": ["team-b*"], "name": "bob"},
]
DOCS = [
    {"id": "goats.txt", "text": "Goats graze on the windy island all summer long."},
    {"id": "llamas.txt", "text": "Llamas hum softly when they are nervous."},
]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def client(tmp_path: Path, tokenizer: Any, enabled: bool = True) -> TestClient:
    settings = make_settings(
        server={"ui": False, "api_keys": KEYS},
        search_log={"enabled": enabled},
        rag={"top_k": 2},
    ).model_copy(update={"data_dir": tmp_path})
    generator = FakeGenerator(reply="Goats graze on the windy island [1].", max_model_len=1024)
    store = QdrantEdgeStore(tmp_path / "db")
    services = make_services(settings, FakeEncoder(), store, generator, tokenizer=tokenizer)
    return TestClient(create_app(settings, services))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feedback-api")


@pytest.fixture(scope="module")
def api(data_dir: Path, tokenizer: Any) -> Iterator[TestClient]:
    """One app for the module (indexing per test would cost seconds each)."""
    with client(data_dir, tokenizer) as c:
        for name in ("team-a", "team-b"):
            body = {"collection": name, "documents": DOCS}
            assert c.post("/v1/index", json=body, headers=auth(ADMIN)).status_code == 200
        yield c


def search(c: TestClient, collection: str = "team-a", key: str = TEAM_A) -> dict[str, Any]:
    r = c.post("/v1/search", json={"collection": collection, "query": "goats"}, headers=auth(key))
    assert r.status_code == 200, r.text
    return dict(r.json())


def records(tmp_path: Path, kind: str) -> list[dict[str, Any]]:
    return [r for r in read_records(log_files(log_dir(tmp_path))) if r["type"] == kind]


def test_feedback_on_a_search_hit(api: TestClient, data_dir: Path) -> None:
    found = search(api)
    assert found["id"].startswith("search-")
    hit = found["data"][0]
    body = {"id": found["id"], "chunk_ids": [hit["chunk_id"]], "label": "positive"}
    r = api.post("/v1/feedback", json=body, headers=auth(TEAM_A))
    assert r.status_code == 200, r.text
    fb = r.json()
    assert fb["object"] == "feedback" and fb["id"].startswith("feedback-")
    assert fb["event_id"] == found["id"] and fb["collection"] == "team-a"
    assert fb["label"] == "positive" and fb["chunk_ids"] == [hit["chunk_id"]]
    logged = records(data_dir, "feedback")[-1]  # written before the 200
    assert logged["id"] == fb["id"] and logged["key"] == "ann" and TEAM_A not in json.dumps(logged)


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"label": "meh"}, "label"),
        ({"label": None}, "label"),
        ({"chunk_ids": "abc"}, "chunk_ids"),
        ({"chunk_ids": [], "doc_ids": None}, "chunk_ids"),
        ({"chunk_ids": ["not-one-of-its-hits"]}, "chunk_ids"),
        ({"doc_ids": ["other.txt"], "chunk_ids": None}, "doc_ids"),
        ({"id": ""}, "id"),
        ({"extra": 1}, "extra"),
        ({"comment": "x" * 2001}, "comment"),
    ],
)
def test_bad_bodies_are_400s_naming_the_param(
    api: TestClient, data_dir: Path, change: dict[str, Any], param: str
) -> None:
    found = search(api)
    before = len(records(data_dir, "feedback"))
    body = {"id": found["id"], "chunk_ids": [found["data"][0]["chunk_id"]], "label": "negative"}
    r = api.post("/v1/feedback", json=body | change, headers=auth(TEAM_A))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert len(records(data_dir, "feedback")) == before


def test_an_unknown_id_is_a_404(api: TestClient) -> None:
    body = {"id": "search-0000", "doc_ids": ["goats.txt"], "label": "positive"}
    r = api.post("/v1/feedback", json=body, headers=auth(TEAM_A))
    assert r.status_code == 404 and r.json()["error"]["code"] == "event_not_found"


def test_a_team_a_key_cannot_judge_a_team_b_search(api: TestClient, data_dir: Path) -> None:
    found = search(api, "team-b", TEAM_B)
    before = len(records(data_dir, "feedback"))
    body = {"id": found["id"], "doc_ids": ["goats.txt"], "label": "negative"}
    r = api.post("/v1/feedback", json=body, headers=auth(TEAM_A))
    assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"
    assert len(records(data_dir, "feedback")) == before
    assert api.post("/v1/feedback", json=body, headers=auth(TEAM_B)).status_code == 200


def test_a_rag_answer_is_logged_with_its_citations(api: TestClient, data_dir: Path) -> None:
    question = {"role": "user", "content": "Where do goats graze?"}
    for stream in (False, True):
        body = {"messages": [question], "rag": {"collection": "team-a"}, "stream": stream}
        r = api.post("/v1/chat/completions", json=body, headers=auth(TEAM_A))
        assert r.status_code == 200, r.text
    completion = json.loads(api.post(
        "/v1/chat/completions",
        json={"messages": [question], "rag": {"collection": "team-a"}},
        headers=auth(TEAM_A),
    ).text)  # fmt: skip
    chats = records(data_dir, "chat")
    assert len(chats) == 3 and chats[-1]["id"] == completion["id"]
    source = completion["sources"][0]
    assert chats[-1]["query"] == "Where do goats graze?" and chats[-1]["key"] == "ann"
    assert chats[-1]["cited"]["chunk_ids"] == [source["chunk_id"]]
    judged = {"id": completion["id"], "chunk_ids": [source["chunk_id"]], "label": "positive"}
    assert api.post("/v1/feedback", json=judged, headers=auth(TEAM_A)).status_code == 200


def test_with_the_log_off_feedback_says_how_to_turn_it_on(tmp_path: Path, tokenizer: Any) -> None:
    with client(tmp_path, tokenizer, enabled=False) as c:
        c.post("/v1/index", json={"collection": "team-a", "documents": DOCS}, headers=auth(ADMIN))
        found = search(c)
        assert found["id"].startswith("search-")  # searches have ids either way
        body = {"id": found["id"], "doc_ids": ["goats.txt"], "label": "positive"}
        r = c.post("/v1/feedback", json=body, headers=auth(TEAM_A))
    assert r.status_code == 503 and r.json()["error"]["code"] == "search_log_disabled"
    assert "search_log.enabled" in r.json()["error"]["message"]
    assert not log_dir(tmp_path).exists()  # nothing logged while it is off
