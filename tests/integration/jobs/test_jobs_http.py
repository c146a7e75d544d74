"""Indexing jobs over real HTTP (real model, embedded store): documents and files indexed in
the background, one bad file listed as a failure, the documents searchable, another team's key
refused, bad submissions answered with OpenAI errors."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from rag_appliance.embedding.encoder import Encoder
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests import docs_factory
from tests.conftest import live_server, make_services, make_settings

ADMIN, TEAM_A, TEAM_B = "admin-jobs-key", "team-a-jobs-key", "team-b-jobs-key"
KEYS: list[Any] = [
    ADMIN,
    {"key": TEAM_A, "role": "read-write", "collections": ["team-a*"], "name": "ann"},
    {"key": TEAM_B, "role": "read-write", "collections": ["team-b*"], "name": "bob"},
]
ANIMALS = ("otter", "heron", "badger", "lynx", "walrus")
PLACES = ("fjord", "marsh", "canyon", "glacier")


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _documents() -> list[dict[str, Any]]:
    return [
        {
            "id": f"note-{i}",
            "text": f"Field note {i}: a {ANIMALS[i % 5]} was seen near the {PLACES[i % 4]} "
            f"at dawn, counted by ranger number {i}.",
            "metadata": {"n": i},
        }
        for i in range(20)
    ]


def _wait(api: httpx.Client, job_id: str, key: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        r = api.get(f"/v1/index/jobs/{job_id}", headers=auth(key))
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return dict(job)
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def test_jobs_index_in_the_background_with_progress_and_scopes(
    encoder: Encoder, tmp_path: Path
) -> None:
    settings = make_settings(
        server={"ui": False, "api_keys": KEYS}, jobs={"batch_items": 10}
    ).model_copy(update={"data_dir": tmp_path})
    services = make_services(settings, encoder, QdrantEdgeStore(tmp_path / "db"))
    with (
        live_server(settings, encoder, services=services) as url,
        httpx.Client(base_url=url, timeout=120) as api,
    ):
        body = {"collection": "team-a-notes", "documents": _documents()}
        r = api.post("/v1/index/jobs", json=body, headers=auth(TEAM_A))
        assert r.status_code == 200, r.text
        queued = r.json()
        assert queued["object"] == "index.job" and queued["documents"]["total"] == 20
        assert queued["status"] in ("queued", "running")

        files = [
            ("files", ("otters.txt", b"Otters hold hands while they sleep on the water.", "")),
            ("files", ("herons.md", b"# Herons\n\nHerons stand still for hours.", "")),
            ("files", ("broken.pdf", docs_factory.corrupt_pdf_bytes(), "application/pdf")),
        ]
        form = {"collection": "team-a-files", "metadata": '{"team": "a"}'}
        r = api.post("/v1/index/jobs", data=form, files=files, headers=auth(TEAM_A))
        assert r.status_code == 200, r.text
        upload = r.json()
        assert upload["kind"] == "files" and upload["documents"]["total"] == 3

        done = _wait(api, queued["id"], TEAM_A)
        assert done["status"] == "completed", done
        assert done["documents"] == {
            "total": 20,
            "done": 20,
            "failed": 0,
            "indexed": 20,
            "unchanged": 0,
        }
        info = api.get("/v1/collections/team-a-notes", headers=auth(TEAM_A)).json()
        assert info["documents"] == 20 and done["chunks"] == info["points"] > 0
        assert done["rate"]["documents_per_s"] > 0 and done["finished_at"] >= done["started_at"]
        query = {"collection": "team-a-notes", "query": "walrus by the glacier", "top_k": 3}
        hits = api.post("/v1/search", json=query, headers=auth(TEAM_A)).json()["data"]
        assert hits and hits[0]["doc_id"] in {"note-4", "note-9", "note-14", "note-19"}, hits

        filed = _wait(api, upload["id"], TEAM_A)
        assert filed["status"] == "completed", filed
        assert filed["documents"]["done"] == 2 and filed["documents"]["failed"] == 1
        (failure,) = filed["failures"]
        assert failure["id"] == "broken.pdf" and failure["index"] == 2
        assert failure["error"]["status"] == 400
        assert failure["error"]["code"] == "unreadable_file"
        docs = api.get("/v1/collections/team-a-files/documents", headers=auth(TEAM_A)).json()
        assert {d["id"] for d in docs["data"]} == {"otters.txt", "herons.md"}

        # Another team's key: not listed, not readable, not cancellable.
        listed = api.get("/v1/index/jobs", headers=auth(TEAM_B)).json()
        assert listed["object"] == "list" and listed["data"] == []
        mine = api.get("/v1/index/jobs", headers=auth(TEAM_A)).json()["data"]
        assert [j["id"] for j in mine] == [upload["id"], queued["id"]]  # the newest first
        for method, path in (
            ("GET", f"/v1/index/jobs/{queued['id']}"),
            ("POST", f"/v1/index/jobs/{queued['id']}/cancel"),
        ):
            r = api.request(method, path, headers=auth(TEAM_B))
            assert r.status_code == 403, r.text
            assert r.json()["error"]["code"] == "permission_denied"
        r = api.post(
            "/v1/index/jobs",
            json={"collection": "team-a-notes", "texts": ["x"]},
            headers=auth(TEAM_B),
        )
        assert r.status_code == 403, r.text
        assert len(api.get("/v1/index/jobs", headers=auth(ADMIN)).json()["data"]) == 2

        # Bad submissions: OpenAI errors, and no job is left behind.
        r = api.get("/v1/index/jobs/job_00000000000000000000000", headers=auth(ADMIN))
        assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
        r = api.post("/v1/index/jobs", content=b"x", headers=auth(ADMIN))
        assert r.status_code == 415, r.text
        r = api.post("/v1/index/jobs", json={"collection": "kb"}, headers=auth(ADMIN))
        assert r.status_code == 400 and r.json()["error"]["param"] == "documents", r.text
        r = api.post("/v1/index/jobs", data={"collection": "kb"}, headers=auth(ADMIN))
        assert r.status_code == 400, r.text
        r = api.post(
            "/v1/index/jobs",
            json={"collection": "bad name!", "texts": ["x"]},
            headers=auth(ADMIN),
        )
        assert r.status_code == 400, r.text
        assert len(api.get("/v1/index/jobs", headers=auth(ADMIN)).json()["data"]) == 2
        assert len(list((tmp_path / "jobs").iterdir())) == 2


def test_job_limits_are_openai_errors(encoder: Encoder, tmp_path: Path) -> None:
    settings = make_settings(
        server={"ui": False}, jobs={"max_items": 3, "max_json_bytes": 2048}
    ).model_copy(update={"data_dir": tmp_path})
    services = make_services(settings, encoder, QdrantEdgeStore(tmp_path / "db"))
    with (
        live_server(settings, encoder, services=services) as url,
        httpx.Client(base_url=url, timeout=60) as api,
    ):
        r = api.post("/v1/index/jobs", json={"collection": "kb", "texts": ["a", "b", "c", "d"]})
        assert r.status_code == 400 and r.json()["error"]["param"] == "documents", r.text
        r = api.post("/v1/index/jobs", json={"collection": "kb", "texts": ["y" * 4096]})
        assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error"
        files = [("files", (f"f{i}.txt", b"hello", "text/plain")) for i in range(4)]
        r = api.post("/v1/index/jobs", data={"collection": "kb"}, files=files)
        assert r.status_code == 400, r.text
        same = [("files", ("a.txt", b"one", "")), ("files", ("a.txt", b"two", ""))]
        r = api.post("/v1/index/jobs", data={"collection": "kb"}, files=same)
        assert r.status_code == 400 and r.json()["error"]["code"] == "duplicate_id", r.text
        assert api.get("/v1/index/jobs").json()["data"] == []
        assert not (tmp_path / "jobs").exists() or not list((tmp_path / "jobs").iterdir())
