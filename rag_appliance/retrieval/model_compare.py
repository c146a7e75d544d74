"""One BEIR set scored per embedding model: the same chunking and search mode, one row each."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rag_appliance.ingest.pipeline import Document, IndexPipeline
from rag_appliance.retrieval.compare import rank
from rag_appliance.retrieval.evaluation import BeirDataset, load_beir, metrics_at_k
from rag_appliance.retrieval.retriever import Retriever, SearchOptions
from rag_appliance.store.base import SearchMode

if TYPE_CHECKING:
    from rag_appliance.services import Services
    from rag_appliance.settings import Settings

Running = Callable[["Settings"], AbstractAsyncContextManager["Services"]]
_BATCH = 256


@dataclass(frozen=True)
class ModelRow:
    """One model's metrics on the set and how long indexing and searching took."""

    model: str
    served_as: str
    metrics: dict[str, float]
    index_seconds: float
    search_seconds: float


def beir_documents(data: BeirDataset) -> list[Document]:
    """The corpus as documents: body text, the title as metadata (contextual chunks use it)."""
    return [
        Document(
            data.bodies.get(doc_id) or data.corpus[doc_id],
            id=doc_id,
            source=doc_id,
            metadata={"title": data.titles[doc_id]} if data.titles.get(doc_id) else {},
        )
        for doc_id in data.corpus
    ]


async def index_dataset(
    pipeline: IndexPipeline,
    collection: str,
    data: BeirDataset,
    progress: Callable[[int], Any] | None = None,
) -> None:
    """Index the corpus into `collection` in batches."""
    docs = beir_documents(data)
    for start in range(0, len(docs), _BATCH):
        step = docs[start : start + _BATCH]
        await pipeline.index(collection, step)
        if progress is not None:
            progress(len(step))


async def score_dataset(
    retriever: Retriever, collection: str, data: BeirDataset, k: int, options: SearchOptions
) -> dict[str, float]:
    """nDCG@k, Recall@k and MRR@k of the judged queries against an indexed collection."""
    qids = [q for q in data.qrels if q in data.queries]
    ranked = await rank(retriever, collection, data.queries, qids, k, options)
    return metrics_at_k(ranked, data.qrels, k)


def model_settings(settings: Settings, model: str) -> Settings:
    """The settings serving `model` instead of the configured one, everything else the same."""
    current = settings.embedding
    same = model == current.model
    # Names and a profile set for the configured model do not belong to another one.
    update: dict[str, Any] = {"model": model}
    if not same:
        update |= {"served_name": None, "aliases": [], "profile": None, "matryoshka_dims": None}
    return settings.model_copy(update={"embedding": current.model_copy(update=update)})


async def compare_models(
    settings: Settings,
    models: Sequence[str],
    data: BeirDataset,
    collection: str,
    k: int,
    options: SearchOptions,
    running: Running,
) -> list[ModelRow]:
    """Each model indexes the set into its own temporary collection, searched the same way."""
    rows: list[ModelRow] = []
    for number, model in enumerate(models, 1):
        # A fresh name: never an existing collection of the user's, removed afterwards.
        name = f"{collection}-{number}-{secrets.token_hex(3)}"
        async with running(model_settings(settings, model)) as services:
            collections = services.require_collections()
            try:
                started = time.perf_counter()
                await index_dataset(services.require_pipeline(), name, data)
                indexed = time.perf_counter() - started
                metrics = await score_dataset(services.require_retriever(), name, data, k, options)
                searched = time.perf_counter() - started - indexed
            finally:
                await collections.delete(name)
            served = services.embedding.served_name
        rows.append(ModelRow(model, served, metrics, indexed, searched))
    return rows


def table(rows: Sequence[ModelRow], k: int) -> str:
    """The rows as an aligned text table, one model a line."""
    names = [f"ndcg@{k}", f"recall@{k}", f"mrr@{k}"]
    width = max([len("model"), *(len(r.served_as) for r in rows)]) + 2
    lines = [f"{'model':<{width}}" + "".join(f"{n:>12}" for n in names) + f"{'index s':>10}"]
    for r in rows:
        cells = "".join(f"{100 * r.metrics[n]:>12.2f}" for n in names)
        lines.append(f"{r.served_as:<{width}}{cells}{r.index_seconds:>10.1f}")
    return "\n".join(lines)


def result_json(
    settings: Settings,
    dataset: Path,
    data: BeirDataset,
    k: int,
    mode: str,
    rows: Sequence[ModelRow],
) -> dict[str, Any]:
    """What --json writes: the set, the shared settings, and each model's metrics."""
    # Keyed by served name; by the names given when two models serve under the same one.
    served = [r.served_as for r in rows]
    keys = served if len(set(served)) == len(served) else [r.model for r in rows]
    return {
        "dataset": str(dataset),
        "documents": len(data.corpus),
        "queries": sum(1 for q in data.qrels if q in data.queries),
        "k": k,
        "mode": mode,
        "settings": {
            "contextual_chunks": settings.ingest.contextual_chunks,
            "chunk_max_tokens": settings.ingest.chunk_max_tokens,
            "bm25": settings.ingest.bm25.model_dump(),
        },
        "models": {
            key: {
                "model": r.model,
                **r.metrics,
                "index_seconds": round(r.index_seconds, 2),
                "search_seconds": round(r.search_seconds, 2),
            }
            for key, r in zip(keys, rows, strict=True)
        },
    }


async def models_command(
    settings: Settings,
    running: Running,
    dataset: Path,
    collection: str,
    k: int,
    models: Sequence[str],
    mode: str | None,
    json_path: Path | None,
) -> int:
    """`rag-appliance eval --model A --model B`: one table row and one JSON entry per model."""
    data = await asyncio.to_thread(load_beir, dataset)
    used = mode or settings.search.mode
    options = SearchOptions(mode=cast(SearchMode, used), rerank=False)
    rows = await compare_models(settings, models, data, collection, k, options, running)
    judged = sum(1 for q in data.qrels if q in data.queries)
    print(f"{len(data.corpus)} documents, {judged} judged queries, {used} search")
    print(table(rows, k))
    result = result_json(settings, dataset, data, k, used, rows)
    if json_path is not None:
        text = json.dumps(result, indent=2) + "\n"
        await asyncio.to_thread(json_path.write_text, text, encoding="utf-8")
    return 0
