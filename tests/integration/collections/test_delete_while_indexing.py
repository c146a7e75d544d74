"""Index calls and collection deletes interleaved over real HTTP (real model, embedded store):
every accepted index call answers 200, and what is left is whole documents only."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from rag_appliance.embedding.encoder import Encoder
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.conftest import live_server, make_settings

WORDS = [
    "goats",
    "graze",
    "on",
    "the",
    "windy",
    "island",
    "while",
    "llamas",
    "hum",
    "near",
    "the",
    "old",
    "stone",
    "harbour",
]


def _doc(call: int, n: int) -> dict[str, Any]:
    # Several chunks per document (32-token chunks), so a half-written one would show.
    text = " ".join(WORDS[(call + n + i) % len(WORDS)] for i in range(120))
    return {"id": f"call{call}-doc{n}", "text": f"Call {call}, document {n}. {text}"}


async def _storm(url: str) -> tuple[list[int], list[int]]:
    """12 index calls and 4 deletes of the same collection, started a little apart."""
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:

        async def index(call: int) -> int:
            await asyncio.sleep(0.05 * call)
            body = {"collection": "kb", "documents": [_doc(call, n) for n in range(3)]}
            r = await client.post("/v1/index", json=body)
            return r.status_code

        async def delete(k: int) -> int:
            await asyncio.sleep(0.1 + 0.15 * k)
            r = await client.delete("/v1/collections/kb")
            assert r.status_code in (200, 404), r.text  # 404: gone and not yet recreated
            if r.status_code == 404:
                assert r.json()["error"]["code"] == "collection_not_found", r.text
            return r.status_code

        indexed = asyncio.gather(*(index(c) for c in range(12)))
        deleted = asyncio.gather(*(delete(k) for k in range(4)))
        return list(await indexed), list(await deleted)


def test_deletes_between_index_calls_never_leave_partial_state(
    encoder: Encoder, tmp_path: Path
) -> None:
    settings = make_settings(ingest={"chunk_max_tokens": 32, "chunk_overlap_tokens": 4})
    store = QdrantEdgeStore(tmp_path / "db")
    with live_server(settings, encoder, store) as url:
        indexed, deleted = asyncio.run(_storm(url))
        assert indexed == [200] * 12  # never a 404 mid-way for an accepted index call
        assert 200 in deleted
        with httpx.Client(base_url=url, timeout=60) as client:
            r = client.get("/v1/collections/kb")
            if r.status_code == 404:  # the last thing to happen was a delete: nothing left
                return
            info = r.json()
            docs = client.get("/v1/collections/kb/documents", params={"limit": 1000}).json()
            listed = {d["id"]: d["chunks"] for d in docs["data"]}
            assert info["documents"] == len(listed) > 0
            assert info["points"] == sum(listed.values()) == store.count("kb")
            assert info["pending_points"] == 0
            # Whole calls only: each surviving call's three documents are all there.
            calls = {doc_id.split("-")[0] for doc_id in listed}
            assert len(listed) == 3 * len(calls)
            for doc_id, chunks in listed.items():
                r = client.get(f"/v1/collections/kb/documents/{doc_id}")
                assert len(r.json()["data"]) == chunks
