"""CLI commands that run the engines in-process: index, search, eval."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag_appliance.services import Services, build_services
from rag_appliance.settings import Settings

# Files read and handed to index_files per step: a full batch of it, and a progress update.
_FILES_PER_STEP = 32


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Services]:
    """Load the models and store, start the engine, and stop it afterwards."""
    services = await asyncio.to_thread(build_services, settings)
    await services.start()
    try:
        yield services
    finally:
        await services.stop()


@dataclass(frozen=True)
class _File:
    path: Path
    name: str  # the name index_files gets: the path relative to the folder given


def walk(paths: Sequence[str]) -> tuple[list[_File], list[str]]:
    """Files to index (folders recursively, supported types only) and paths that do not exist."""
    from rag_appliance.ingest.parsers import SUPPORTED_EXTENSIONS

    files: list[_File] = []
    missing: list[str] = []
    for raw in paths:
        root = Path(raw)
        if root.is_file():
            files.append(_File(root, root.name))
        elif root.is_dir():
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                if path.suffix.lower() in SUPPORTED_EXTENSIONS:
                    files.append(_File(path, path.relative_to(root).as_posix()))
        else:
            missing.append(raw)
    return files, missing


async def index_command(
    settings: Settings, paths: Sequence[str], collection: str, metadata: dict[str, Any]
) -> int:
    """Index files and folders; exit code 1 when any file failed."""
    from tqdm import tqdm

    from rag_appliance.ingest.files import FileBlob, index_files

    files, missing = walk(paths)
    for raw in missing:
        print(f"error: {raw}: no such file or directory", file=sys.stderr)
    failed = len(missing)
    indexed = unchanged = chunks = 0
    started = time.perf_counter()
    async with running(settings) as services:
        pipeline = services.require_pipeline()
        bar = tqdm(total=len(files), unit="file", desc=f"indexing into {collection}")
        for step in _steps(files):
            read: list[tuple[_File, FileBlob]] = []
            for item in step:
                try:
                    data = await asyncio.to_thread(item.path.read_bytes)
                except OSError as exc:
                    failed += 1
                    tqdm.write(f"error: {item.path}: {exc.strerror or exc}", file=sys.stderr)
                    continue
                read.append((item, FileBlob(item.name, data)))
            outcomes = await index_files(pipeline, collection, [b for _, b in read], metadata)
            for (item, _), outcome in zip(read, outcomes, strict=True):
                if outcome.error is not None:
                    failed += 1
                    tqdm.write(f"error: {item.path}: {outcome.error.message}", file=sys.stderr)
                    continue
                chunks += outcome.chunks
                indexed += outcome.status == "indexed"
                unchanged += outcome.status == "unchanged"
            bar.update(len(step))
        bar.close()
    seconds = time.perf_counter() - started
    print(
        f"{indexed} indexed, {unchanged} unchanged, {failed} failed; {chunks} chunks "
        f"in {seconds:.1f}s into collection '{collection}'"
    )
    return 1 if failed else 0


def _steps(files: list[_File]) -> Iterator[list[_File]]:
    for start in range(0, len(files), _FILES_PER_STEP):
        yield files[start : start + _FILES_PER_STEP]


async def search_command(
    settings: Settings, query: str, collection: str, top_k: int, flt: dict[str, Any] | None
) -> int:
    """Print the top hits for a query."""
    async with running(settings) as services:
        hits = await services.require_retriever().search(collection, query, top_k, flt)
    if not hits:
        print("no results")
    for rank, hit in enumerate(hits, 1):
        snippet = " ".join(hit.text.split())[:160]
        print(f"{rank:>2}. {hit.score:.4f}  {hit.doc_id}#{hit.chunk_index}  {snippet}")
    return 0


async def eval_command(
    settings: Settings, dataset: Path, collection: str, k: int, exact: bool
) -> int:
    """Index a BEIR folder, search every judged query, print nDCG@k, Recall@k, MRR@k."""
    from tqdm import tqdm

    from rag_appliance.ingest.pipeline import Document
    from rag_appliance.retrieval.evaluation import load_beir, metrics_at_k

    data = load_beir(dataset)
    async with running(settings) as services:
        pipeline = services.require_pipeline()
        docs = [Document(text, id=doc_id, source=doc_id) for doc_id, text in data.corpus.items()]
        with tqdm(total=len(docs), unit="doc", desc="indexing corpus") as bar:
            for start in range(0, len(docs), 256):
                await pipeline.index(collection, docs[start : start + 256])
                bar.update(len(docs[start : start + 256]))
        retriever = services.require_retriever()
        judged = [q for q in data.qrels if q in data.queries]
        # Several chunks of one document may rank: fetch extra so that k distinct documents remain.
        depth = min(k * 5, services.settings.search.max_top_k)
        ranked: dict[str, list[str]] = {}
        for qid in tqdm(judged, unit="query", desc="searching"):
            hits = await retriever.search(collection, data.queries[qid], depth)
            ranked[qid] = [h.doc_id for h in hits]
        scores = metrics_at_k(ranked, data.qrels, k)
        rows = {"appliance search": scores}
        if exact:
            rows["exact numpy search"] = metrics_at_k(
                await exact_ranking(services, collection, data.queries, judged, depth),
                data.qrels,
                k,
            )
    print(f"{len(data.corpus)} documents, {len(judged)} judged queries, collection '{collection}'")
    names = list(scores)
    print(f"{'':<20}" + "".join(f"{n:>12}" for n in names))
    for label, row in rows.items():
        print(f"{label:<20}" + "".join(f"{100 * row[n]:>12.2f}" for n in names))
    print(json.dumps({label: row for label, row in rows.items()}))
    return 0


async def exact_ranking(
    services: Services, collection: str, queries: dict[str, str], qids: list[str], depth: int
) -> dict[str, list[str]]:
    """Brute-force cosine ranking with numpy over the collection's own chunks (a reference)."""
    from rag_appliance.embedding.service import EmbedParams

    collections = services.require_collections()
    store = collections.store
    texts: list[str] = []
    owners: list[str] = []
    cursor: str | None = None
    while True:
        records, cursor = await asyncio.to_thread(
            store.scroll, collection, collections.visible(), 1000, cursor
        )
        texts += [r.payload["text"] for r in records]
        owners += [r.payload["doc_id"] for r in records]
        if cursor is None:
            break
    embed = services.embedding.embed
    docs = np.concatenate(
        [
            (await embed(EmbedParams(inputs=texts[i : i + 256], input_type="document"))).vectors
            for i in range(0, len(texts), 256)
        ]
    )
    query_vecs = (
        await embed(EmbedParams(inputs=[queries[q] for q in qids], input_type="query"))
    ).vectors
    scores = query_vecs @ docs.T
    ranked: dict[str, list[str]] = {}
    for row, qid in enumerate(qids):
        order = np.argsort(-scores[row], kind="stable")[:depth]
        ranked[qid] = [owners[i] for i in order]
    return ranked
