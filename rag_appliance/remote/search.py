"""`rag-appliance search QUERY --server URL`: /v1/search, printed as the local command prints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rag_appliance.remote.client import RemoteClient


async def search_remote(
    client: RemoteClient,
    query: str,
    collection: str,
    top_k: int,
    flt: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The server's hits for a query, best first."""
    body: dict[str, Any] = {"collection": collection, "query": query, "top_k": top_k}
    if flt is not None:
        body["filter"] = dict(flt)
    return list((await client.json("POST", "/v1/search", json=body))["data"])


def print_hits(hits: Sequence[Mapping[str, Any]]) -> None:
    """One line per hit: rank, score, doc#chunk, the start of its text."""
    if not hits:
        print("no results")
    for rank, hit in enumerate(hits, 1):
        snippet = " ".join(str(hit["text"]).split())[:160]
        print(f"{rank:>2}. {hit['score']:.4f}  {hit['doc_id']}#{hit['chunk_index']}  {snippet}")
