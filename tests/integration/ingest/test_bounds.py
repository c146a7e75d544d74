"""Bounded ingestion over real HTTP: zip bombs, smuggled binaries, the parse sandbox."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag_appliance.embedding.encoder import Encoder
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests import docs_factory as f
from tests.conftest import live_server, make_settings
from tests.ingest_bombs import docx_bomb

FACT = "The ferry to Lundholm leaves at 06:40 and carries at most 212 passengers."


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    """295 MiB of document.xml in about 1 MB of DOCX: honest headers, and lying ones."""
    return {"honest": docx_bomb(295), "lying": docx_bomb(295, lying=True)}


@pytest.fixture
def server(encoder: Encoder, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    ingest = getattr(request, "param", {})
    settings = make_settings(ingest=ingest)
    with live_server(settings, encoder, QdrantEdgeStore(tmp_path / "db")) as url:
        yield url


def upload_timed(url: str, files: list[tuple[str, bytes, str]]) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    response = httpx.post(
        f"{url}/v1/index/upload",
        data={"collection": "kb"},
        files=[("files", file) for file in files],
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json(), time.monotonic() - started


def health_while(url: str, work: threading.Thread) -> list[float]:
    """/health latencies, sampled while `work` runs."""
    latencies: list[float] = []
    with httpx.Client(base_url=url, timeout=10) as client:
        work.start()
        while work.is_alive() or len(latencies) < 3:
            started = time.monotonic()
            assert client.get("/health").status_code == 200
            latencies.append(time.monotonic() - started)
            time.sleep(0.05)
    work.join()
    return latencies


def run_upload(
    url: str, files: list[tuple[str, bytes, str]]
) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def target() -> None:
        box["body"], box["elapsed"] = upload_timed(url, files)

    return threading.Thread(target=target), box


@pytest.mark.parametrize("kind", ["honest", "lying"])
def test_a_docx_bomb_is_a_4xx_within_5s_and_health_stays_fast(
    server: str, bombs: dict[str, bytes], kind: str
) -> None:
    docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    work, box = run_upload(
        server, [("bomb.docx", bombs[kind], docx), ("ok.txt", FACT.encode(), "text/plain")]
    )
    latencies = health_while(server, work)
    bomb, good = box["body"]["files"]
    assert box["elapsed"] < 5, f"the upload took {box['elapsed']:.1f}s"
    assert bomb["status"] == "error" and 400 <= bomb["error"]["status"] < 500
    expected = {"honest": "file_too_complex", "lying": "unreadable_file"}[kind]
    assert bomb["error"]["code"] == expected, bomb
    assert good["status"] == "indexed"  # one bad file fails only itself
    assert max(latencies) < 0.5, f"/health took up to {max(latencies):.2f}s"


@pytest.mark.parametrize(
    "server",
    [
        {
            # Zip checks relaxed, so python-docx really inflates and parses the bomb: only the
            # worker's own limits stop it.
            "max_unzipped_bytes": 2**31,
            "max_zip_ratio": 10**6,
            "parse_timeout_s": 2.0,
            "parse_memory_mb": 1024,
        }
    ],
    indirect=True,
)
def test_the_sandbox_stops_a_bomb_past_the_zip_checks(server: str, bombs: dict[str, bytes]) -> None:
    work, box = run_upload(server, [("bomb.docx", bombs["honest"], "application/octet-stream")])
    latencies = health_while(server, work)
    (bomb,) = box["body"]["files"]
    assert box["elapsed"] < 8, f"the upload took {box['elapsed']:.1f}s"
    assert bomb["status"] == "error", bomb
    assert bomb["error"]["status"] == 413
    assert bomb["error"]["code"] in ("parse_timeout", "file_too_complex"), bomb
    assert max(latencies) < 0.5, f"/health took up to {max(latencies):.2f}s"
    # The worker was replaced: the next file parses.
    body, _ = upload_timed(server, [("after.txt", FACT.encode(), "text/plain")])
    assert body["files"][0]["status"] == "indexed"


def test_a_docx_sent_as_text_named_ok_txt_is_a_415_naming_docx(server: str) -> None:
    body, _ = upload_timed(server, [("ok.txt", f.docx_bytes(FACT), "text/plain")])
    (result,) = body["files"]
    assert result["status"] == "error"
    assert result["error"]["status"] == 415
    assert result["error"]["code"] == "content_type_mismatch"
    assert "DOCX" in result["error"]["message"] and "text/plain" in result["error"]["message"]
    # Nothing of it was indexed.
    listed = httpx.get(f"{server}/v1/collections").json()["data"]
    assert all(c["name"] != "kb" or c["points"] == 0 for c in listed)
