"""A client that leaves mid-index: the call is cancelled and its uncommitted chunks deleted."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from rag_appliance.collections.service import UNCOMMITTED
from rag_appliance.embedding.encoder import Encoder
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.conftest import live_server, make_settings

CORPUS = Path(__file__).resolve().parents[2] / "data" / "beir-manpages" / "corpus.jsonl"


def big_documents(count: int, chars: int) -> list[dict[str, str]]:
    """Real man-page text, `count` documents of about `chars` characters each."""
    texts = [json.loads(line)["text"] for line in CORPUS.read_text().splitlines()]
    pool = "\n\n".join(texts)
    return [{"id": f"big-{i}", "text": pool[i * chars : (i + 1) * chars]} for i in range(count)]


def points(store: QdrantEdgeStore, uncommitted: bool = False) -> int:
    try:
        return store.count("kb", UNCOMMITTED if uncommitted else None)
    except Exception:  # the collection does not exist yet
        return 0


def wait_for(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_a_client_leaving_mid_index_cancels_and_rolls_back(
    encoder: Encoder, tmp_path: Path
) -> None:
    store = QdrantEdgeStore(tmp_path / "db")
    settings = make_settings(ingest={"embed_batch": 16})
    # About 1,700 chunks: half a minute of embedding here, if nothing stopped it.
    body = json.dumps({"collection": "kb", "documents": big_documents(8, 40_000)}).encode()
    with live_server(settings, encoder, store) as url:
        where = urlsplit(url)
        conn = socket.create_connection((where.hostname, where.port))
        head = (
            f"POST /v1/index HTTP/1.1\r\nHost: {where.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        conn.sendall(head.encode() + body)
        assert wait_for(lambda: points(store, uncommitted=True) > 0, 60), "nothing was written"
        conn.close()  # the client leaves mid-way
        # The rollback deletes every chunk the call wrote; none is committed, none left over.
        assert wait_for(lambda: points(store) == 0, 10), (points(store), points(store, True))
        time.sleep(2)
        assert points(store) == 0, "indexing went on after the client had gone"
        assert points(store, uncommitted=True) == 0
        # The server is fine, and re-sending converges.
        small = {"collection": "kb", "documents": big_documents(1, 2_000)}
        r = httpx.post(f"{url}/v1/index", json=small, timeout=60)
        assert r.status_code == 200, r.text
        assert points(store) == r.json()["chunks"] > 0
        assert points(store, uncommitted=True) == 0
