"""Uploads of real files, persistence across restarts, provenance conflicts (embedded store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from rag_appliance.embedding.encoder import Encoder
from rag_appliance.store.base import Provenance
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests import docs_factory
from tests.conftest import live_server, make_settings
from tests.integration.test_index_search import make_store

FACTS = {
    "txt": "The lighthouse keeper on Varn Island feeds exactly eleven goats every morning.",
    "md": "Our deployment freezes begin on the second Thursday of every December.",
    "html": "The museum's oldest clock was built by a watchmaker named Idris Pell in 1741.",
    "pdf": "The quarterly budget allocates forty thousand credits to the robotics club.",
    "docx": "Employees may bring one cat named Pickles to the office on Fridays.",
}
QUESTIONS = {
    "txt": "How many goats are fed on Varn Island?",
    "md": "When do deployment freezes start?",
    "html": "Who built the museum's oldest clock?",
    "pdf": "How much money does the robotics club get?",
    "docx": "Which pet is allowed in the office on Fridays?",
}


def upload(api: httpx.Client, files: list[tuple[str, bytes, str]], **form: str) -> Any:
    parts = [("files", (name, data, media)) for name, data, media in files]
    r = api.post("/v1/index/upload", data={"collection": "files"} | form, files=parts)
    assert r.status_code == 200, r.text
    return r.json()


def top_source(api: httpx.Client, query: str) -> str:
    r = api.post("/v1/search", json={"collection": "files", "query": query, "top_k": 1})
    assert r.status_code == 200, r.text
    return r.json()["data"][0]["source"]


@pytest.mark.parametrize("kind", ["edge", "server"])
def test_upload_every_format_then_search(encoder: Encoder, tmp_path: Path, kind: str) -> None:
    paths = docs_factory.make_all(tmp_path / "in", FACTS)
    settings = make_settings()
    with (
        live_server(settings, encoder, make_store(kind, tmp_path)) as url,
        httpx.Client(base_url=url, timeout=120) as api,
    ):
        files = [(p.name, p.read_bytes(), "application/octet-stream") for p in paths.values()]
        files.append(("broken.pdf", docs_factory.corrupt_pdf_bytes(), "application/pdf"))
        files.append(("photo.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png"))
        body = upload(api, files, metadata='{"team": "ops"}')
        by_name = {f["filename"]: f for f in body["files"]}
        for ext in FACTS:
            assert by_name[f"doc.{ext}"]["status"] == "indexed", by_name[f"doc.{ext}"]
            assert by_name[f"doc.{ext}"]["chunks"] >= 1
        assert by_name["broken.pdf"]["status"] == "error"
        assert by_name["broken.pdf"]["error"]["status"] == 400
        assert by_name["broken.pdf"]["error"]["code"] == "unreadable_file"
        assert by_name["photo.png"]["error"]["status"] == 415
        for ext, question in QUESTIONS.items():
            assert top_source(api, question) == f"doc.{ext}", question
        hit = api.post(
            "/v1/search", json={"collection": "files", "query": QUESTIONS["pdf"], "top_k": 1}
        ).json()["data"][0]
        assert (
            hit["metadata"]["team"] == "ops" and hit["metadata"]["media_type"] == "application/pdf"
        )
        assert "forty thousand credits" in hit["text"]
        docs = api.get("/v1/collections/files/documents").json()["data"]
        assert sorted(d["id"] for d in docs) == sorted(f"doc.{e}" for e in FACTS)
        # Re-uploading the same file name with new content replaces that document.
        new = upload(
            api, [("doc.txt", b"The keeper now feeds twelve llamas instead.", "text/plain")]
        )
        assert new["files"][0]["status"] == "indexed"
        assert top_source(api, "What does the keeper feed now?") == "doc.txt"
        assert api.get("/v1/collections/files").json()["documents"] == 5
        # File names are labels, never paths.
        odd = upload(api, [("../../etc/passwd.txt", b"Path tricks stay names.", "text/plain")])
        assert odd["files"][0]["doc_id"] == "passwd.txt"


def test_upload_limits_and_bad_forms(encoder: Encoder, tmp_path: Path) -> None:
    settings = make_settings(ingest={"max_upload_bytes": 4096, "max_files_per_upload": 2})
    with (
        live_server(settings, encoder, QdrantEdgeStore(tmp_path / "db")) as url,
        httpx.Client(base_url=url, timeout=120) as api,
    ):
        big = [("big.txt", b"word " * 2000, "text/plain")]
        r = api.post(
            "/v1/index/upload", data={"collection": "c"}, files=[("files", f) for f in big]
        )
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        three = [("files", (f"{i}.txt", b"text", "text/plain")) for i in range(3)]
        r = api.post("/v1/index/upload", data={"collection": "c"}, files=three)
        assert r.status_code == 400 and r.json()["error"]["param"] == "files"
        one = [("files", ("a.txt", b"some text", "text/plain"))]
        r = api.post("/v1/index/upload", data={"collection": "c", "metadata": "[1]"}, files=one)
        assert r.status_code == 400 and r.json()["error"]["param"] == "metadata"
        r = api.post("/v1/index/upload", data={"collection": "c"})
        assert r.status_code == 400


def test_data_survives_a_restart(encoder: Encoder, tmp_path: Path) -> None:
    settings = make_settings()
    docs = [{"id": ext, "text": fact} for ext, fact in FACTS.items()]
    with (
        live_server(settings, encoder, QdrantEdgeStore(tmp_path / "db")) as url,
        httpx.Client(base_url=url, timeout=120) as api,
    ):
        assert (
            api.post("/v1/index", json={"collection": "files", "documents": docs}).status_code
            == 200
        )
    with (
        live_server(settings, encoder, QdrantEdgeStore(tmp_path / "db")) as url,
        httpx.Client(base_url=url, timeout=120) as api,
    ):
        info = api.get("/v1/collections/files").json()
        assert info["documents"] == 5 and info["provenance"]["model"] == "all-MiniLM-L6-v2"
        r = api.post("/v1/search", json={"collection": "files", "query": QUESTIONS["docx"]})
        assert r.json()["data"][0]["doc_id"] == "docx"


def test_other_models_collection_is_a_409(encoder: Encoder, tmp_path: Path) -> None:
    store = QdrantEdgeStore(tmp_path / "db")
    store.create_collection("legacy", Provenance(model="BAAI/bge-base-en-v1.5", dimension=768))
    with (
        live_server(make_settings(), encoder, store) as url,
        httpx.Client(base_url=url, timeout=120) as api,
    ):
        r = api.post("/v1/index", json={"collection": "legacy", "texts": ["hello"]})
        assert r.status_code == 409
        assert "bge-base-en-v1.5" in r.json()["error"]["message"]
        r = api.post("/v1/search", json={"collection": "legacy", "query": "hello"})
        assert r.status_code == 409
        assert api.get("/v1/collections/legacy").json()["points"] == 0


def test_search_scores_match_exact_cosine(encoder: Encoder, tmp_path: Path) -> None:
    texts = list(FACTS.values())
    with (
        live_server(make_settings(), encoder, QdrantEdgeStore(tmp_path / "db")) as url,
        httpx.Client(base_url=url, timeout=120) as api,
    ):
        api.post("/v1/index", json={"collection": "files", "texts": texts})
        hits = api.post(
            "/v1/search",
            json={"collection": "files", "query": QUESTIONS["html"], "top_k": 5, "mode": "dense"},
        ).json()["data"]
        vecs = api.post("/v1/embeddings", json={"input": [QUESTIONS["html"], *texts]}).json()
    matrix = np.array([d["embedding"] for d in vecs["data"]], dtype=np.float32)
    exact = sorted((float(matrix[0] @ v) for v in matrix[1:]), reverse=True)
    # bfloat16 results depend slightly on batch composition: compare to 3 decimals' worth.
    assert [h["score"] for h in hits] == pytest.approx(exact, abs=5e-3)
