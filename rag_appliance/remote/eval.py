"""`rag-appliance eval --server URL`: a BEIR folder's queries against a collection on a server.

The corpus is indexed through POST /v1/index first (only the documents the collection lacks);
each search mode's rows are scored with the local eval's metrics and printed in its table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from rag_appliance.remote.client import RemoteClient, RemoteError
from rag_appliance.remote.index import stored_documents
from rag_appliance.retrieval.compare import MODES, Row
from rag_appliance.retrieval.evaluation import BeirDataset, metrics_at_k

# Documents per /v1/index call (the server's default max_documents_per_request is 1000).
_BATCH = 256
# Searches in flight at once.
_PARALLEL = 8


async def index_corpus(client: RemoteClient, collection: str, data: BeirDataset) -> int:
    """Index the corpus documents the collection does not hold yet; how many were sent."""
    from tqdm import tqdm

    held = await stored_documents(client, collection)
    missing = [doc_id for doc_id in data.corpus if doc_id not in held]
    with tqdm(total=len(missing), unit="doc", desc="indexing corpus", disable=not missing) as bar:
        for start in range(0, len(missing), _BATCH):
            step = missing[start : start + _BATCH]
            documents = [
                {
                    "id": doc_id,
                    "text": data.bodies.get(doc_id) or data.corpus[doc_id],
                    "source": doc_id,
                    "metadata": {"title": data.titles[doc_id]} if data.titles.get(doc_id) else {},
                }
                for doc_id in step
            ]
            await client.json(
                "POST", "/v1/index", json={"collection": collection, "documents": documents}
            )
            bar.update(len(step))
    return len(missing)


async def rank(
    client: RemoteClient,
    collection: str,
    data: BeirDataset,
    qids: Sequence[str],
    k: int,
    options: dict[str, Any],
) -> dict[str, list[str]]:
    """The top k distinct documents per query, grouped by the server."""
    gate = asyncio.Semaphore(_PARALLEL)

    async def one(qid: str) -> list[str]:
        body = {
            "collection": collection,
            "query": data.queries[qid],
            "top_k": k,
            "group_by_document": True,
            **options,
        }
        async with gate:
            hits = (await client.json("POST", "/v1/search", json=body))["data"]
        return [str(h["doc_id"]) for h in hits]

    found = await asyncio.gather(*(one(q) for q in qids))
    return dict(zip(qids, found, strict=True))


async def compare_remote(
    client: RemoteClient, collection: str, data: BeirDataset, k: int
) -> list[Row]:
    """Every search mode's metrics on the judged queries, as the local eval's rows."""
    qids = [q for q in data.qrels if q in data.queries]
    rows: list[Row] = []
    for label, opts in MODES:
        options: dict[str, Any] = {"mode": opts.mode, "rerank": False}
        if opts.mode == "hybrid" and opts.fusion:
            options["fusion"] = opts.fusion
        try:
            ranked = await rank(client, collection, data, qids, k, options)
        except RemoteError as exc:
            if exc.status >= 500:
                raise
            rows.append(Row(label, None, exc.message))  # e.g. sparse on a dense-only collection
            continue
        rows.append(Row(label, metrics_at_k(ranked, data.qrels, k)))
    return rows


def print_rows(rows: Sequence[Row]) -> None:
    """The metrics table: one row per configuration, percentages."""
    names = next((list(r.metrics) for r in rows if r.metrics), [])
    print(f"{'':<22}" + "".join(f"{n:>12}" for n in names))
    for row in rows:
        cells = (
            "".join(f"{100 * row.metrics[n]:>12.2f}" for n in names)
            if row.metrics
            else f"  ({row.note})"
        )
        print(f"{row.label:<22}{cells}")
