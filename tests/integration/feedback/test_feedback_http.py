"""Search -> feedback -> pairs export over real HTTP, the real model and the embedded store;
unknown ids are 404s and a team-a key cannot judge a team-b search."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson

from rag_appliance.embedding.encoder import Encoder
from rag_appliance.feedback.log import log_dir, log_files, read_records
from rag_appliance.feedback.pairs import export_command
from rag_appliance.store.registry import build_store
from tests.conftest import live_server, make_services, make_settings

ADMIN, TEAM_A, TEAM_B = "admin-key", "team-a-key", "team-b-key"
KEYS: list[Any] = [
    ADMIN,
    {"key": TEAM_A, "role": "read-only", "collections": ["team-a*"], "name": "ann"},
    {"key": TEAM_B, "role": "read-only", "collections": ["team-b*"], "name": "bob"},
]
FACTS = {
    "volcano": "Mount Kelvara is a dormant volcano whose last eruption buried the valley of "
    "Osk in grey ash three hundred years ago.",
    "recipe": "To make the lemon tart, blind-bake the pastry shell, then fill it with a curd "
    "of eggs, sugar, butter and lemon juice.",
    "python": "Python's asyncio event loop runs coroutines cooperatively; a blocking call "
    "inside a coroutine stalls every other task.",
}
QUERY = "Which eruption covered a valley in ash?"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def search(api: httpx.Client, collection: str, key: str) -> dict[str, Any]:
    body = {"collection": collection, "query": QUERY, "top_k": 3, "mode": "dense"}
    r = api.post("/v1/search", json=body, headers=auth(key))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_search_feedback_then_pairs_export(encoder: Encoder, tmp_path: Path, capsys: Any) -> None:
    settings = make_settings(
        server={"ui": False, "api_keys": KEYS}, search_log={"enabled": True}
    ).model_copy(update={"data_dir": tmp_path})
    services = make_services(settings, encoder, build_store(settings))
    docs = [{"id": name, "text": text} for name, text in FACTS.items()]
    with (
        live_server(settings, encoder, services=services) as url,
        httpx.Client(base_url=url, timeout=120) as api,
    ):
        for collection in ("team-a", "team-b"):
            body = {"collection": collection, "documents": docs}
            assert api.post("/v1/index", json=body, headers=auth(ADMIN)).status_code == 200
        found = search(api, "team-a", TEAM_A)
        top, *rest = found["data"]
        assert found["id"].startswith("search-") and top["doc_id"] == "volcano"
        wrong = next(h for h in rest if h["doc_id"] == "recipe")
        for chunk, label in ((top, "positive"), (wrong, "negative")):
            body = {"id": found["id"], "chunk_ids": [chunk["chunk_id"]], "label": label}
            r = api.post("/v1/feedback", json=body, headers=auth(TEAM_A))
            assert r.status_code == 200 and r.json()["label"] == label, r.text

        unknown = {"id": "search-does-not-exist", "doc_ids": ["volcano"], "label": "positive"}
        r = api.post("/v1/feedback", json=unknown, headers=auth(TEAM_A))
        assert r.status_code == 404
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}

        theirs = search(api, "team-b", TEAM_B)
        judged = {"id": theirs["id"], "doc_ids": ["volcano"], "label": "negative"}
        r = api.post("/v1/feedback", json=judged, headers=auth(TEAM_A))
        assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"
    # The server has stopped (the embedded store is free): export as the CLI does.
    kinds = [r["type"] for r in read_records(log_files(log_dir(tmp_path)))]
    assert kinds.count("search") == 2 and kinds.count("feedback") == 2  # the 403 logged nothing
    out = tmp_path / "pairs.jsonl"
    assert asyncio.run(export_command(settings, out, "team-a", None)) == 0
    assert [orjson.loads(line) for line in out.read_bytes().splitlines()] == [
        {"query": QUERY, "positive": FACTS["volcano"], "negative": FACTS["recipe"]}
    ]
    assert "1 pairs (1 with a negative) from 1 events" in capsys.readouterr().out
