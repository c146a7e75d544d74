"""Retrieval evaluation on a BEIR folder: every search mode side by side, and an exact reference."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag_appliance.collections.service import CollectionService
from rag_appliance.embedding.service import EmbeddingService, EmbedParams
from rag_appliance.errors import InvalidRequest
from rag_appliance.ingest.pipeline import chunk_context, contextual_text
from rag_appliance.retrieval.evaluation import BeirDataset, metrics_at_k
from rag_appliance.retrieval.retriever import Retriever, SearchOptions

# The rows `rag-appliance eval` compares: each mode, each hybrid fusion, then reranking.
MODES: tuple[tuple[str, SearchOptions], ...] = (
    ("dense", SearchOptions(mode="dense", rerank=False)),
    ("sparse (BM25)", SearchOptions(mode="sparse", rerank=False)),
    ("hybrid rrf", SearchOptions(mode="hybrid", fusion="rrf", rerank=False)),
    ("hybrid dbsf", SearchOptions(mode="hybrid", fusion="dbsf", rerank=False)),
    ("hybrid weighted", SearchOptions(mode="hybrid", fusion="weighted", rerank=False)),
)
RERANKED = ("hybrid + rerank", SearchOptions(mode="hybrid", rerank=True))


@dataclass(frozen=True)
class Row:
    """One configuration's metrics, or why it could not run."""

    label: str
    metrics: dict[str, float] | None
    note: str = ""


async def rank(
    retriever: Retriever,
    collection: str,
    queries: dict[str, str],
    qids: Sequence[str],
    k: int,
    options: SearchOptions,
) -> dict[str, list[str]]:
    """The top k distinct documents per query (grouped in the engine)."""
    grouped = SearchOptions(options.mode, options.fusion, True, options.rerank)
    ranked: dict[str, list[str]] = {}
    for qid in qids:
        hits = await retriever.search(collection, queries[qid], k, options=grouped)
        ranked[qid] = [h.doc_id for h in hits]
    return ranked


async def compare(
    retriever: Retriever,
    collection: str,
    data: BeirDataset,
    k: int,
    exact: EmbeddingService | None = None,
    contextual: bool = True,
) -> list[Row]:
    """Every mode's metrics on the judged queries; the exact numpy row when `exact` is given."""
    qids = [q for q in data.qrels if q in data.queries]
    modes = list(MODES) + ([RERANKED] if retriever.reranker is not None else [])
    rows: list[Row] = []
    for label, options in modes:
        try:
            ranked = await rank(retriever, collection, data.queries, qids, k, options)
        except InvalidRequest as exc:  # e.g. sparse modes on a dense-only collection
            rows.append(Row(label, None, exc.message))
            continue
        rows.append(Row(label, metrics_at_k(ranked, data.qrels, k)))
    if exact is not None:
        ranked = await exact_ranking(
            exact, retriever.collections, collection, data.queries, qids, k, contextual
        )
        rows.append(Row("exact dense (numpy)", metrics_at_k(ranked, data.qrels, k)))
    return rows


async def exact_ranking(
    embedding: EmbeddingService,
    collections: CollectionService,
    collection: str,
    queries: dict[str, str],
    qids: Sequence[str],
    k: int,
    contextual: bool = True,
) -> dict[str, list[str]]:
    """Brute-force cosine over the collection's own chunks, embedded as the index embedded them."""
    store = collections.store
    texts: list[str] = []
    owners: list[str] = []
    cursor: str | None = None
    while True:
        records, cursor = await asyncio.to_thread(
            store.scroll, collection, collections.visible(), 1000, cursor
        )
        for r in records:
            context = chunk_context(r.payload.get("metadata") or {}, contextual)
            texts.append(contextual_text(context, r.payload["text"]))
            owners.append(r.payload["doc_id"])
        if cursor is None:
            break
    docs = np.concatenate(
        [
            (
                await embedding.embed(EmbedParams(inputs=texts[i : i + 256], input_type="document"))
            ).vectors
            for i in range(0, len(texts), 256)
        ]
    )
    query_vecs = (
        await embedding.embed(EmbedParams(inputs=[queries[q] for q in qids], input_type="query"))
    ).vectors
    scores = query_vecs @ docs.T
    ranked: dict[str, list[str]] = {}
    for row, qid in enumerate(qids):
        order = np.argsort(-scores[row], kind="stable")
        ranked[qid] = list(dict.fromkeys(owners[i] for i in order))[:k]
    return ranked
