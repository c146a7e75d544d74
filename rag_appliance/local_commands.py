"""CLI commands that run the engines in-process: index, search, upgrade-sparse, eval."""

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

from rag_appliance.remote.walk import WalkedFile, walk
from rag_appliance.services import Services, build_services
from rag_appliance.settings import Settings

# Files read and handed to index_files per step: a full batch of it, and a progress update.
_FILES_PER_STEP = 32


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Services]:
    """Load the models and store, start the engine, and stop it afterwards."""
    from rag_appliance.errors import ServiceUnavailable

    try:
        services = await asyncio.to_thread(build_services, settings)
    except ServiceUnavailable as exc:
        if "in use by another process" not in exc.message:
            raise
        # A server holds the data dir: index, search and eval can go through it instead.
        raise ServiceUnavailable(
            f"{exc.message} (a running server?): stop it, or run index, search or eval "
            "against it with --server URL, e.g. --server http://127.0.0.1:8000"
        ) from None
    await services.start()
    try:
        yield services
    finally:
        await services.stop()


async def index_command(
    settings: Settings, paths: Sequence[str], collection: str, metadata: dict[str, Any]
) -> int:
    """Index files and folders; exit code 1 when any file failed."""
    from tqdm import tqdm

    files, missing = walk(paths)
    for raw in missing:
        print(f"error: {raw}: no such file or directory", file=sys.stderr)
    counts = _Counts(failed=len(missing))
    started = time.perf_counter()
    async with running(settings) as services:
        pipeline = services.require_pipeline()
        with tqdm(total=len(files), unit="file", desc=f"indexing into {collection}") as bar:
            # Steps one after another: a kill leaves whole earlier steps for a re-run to skip.
            for step in _steps(files):
                await _index_step(pipeline, collection, metadata, step, counts)
                bar.update(len(step))
    seconds = time.perf_counter() - started
    print(
        f"{counts.indexed} indexed, {counts.unchanged} unchanged, {counts.failed} failed; "
        f"{counts.chunks} chunks in {seconds:.1f}s into collection '{collection}'"
    )
    return 1 if counts.failed else 0


@dataclass
class _Counts:
    failed: int = 0
    indexed: int = 0
    unchanged: int = 0
    chunks: int = 0


async def _index_step(
    pipeline: Any,
    collection: str,
    metadata: dict[str, Any],
    step: list[WalkedFile],
    counts: _Counts,
) -> None:
    """Read and index one step's files, counting each outcome."""
    from tqdm import tqdm

    from rag_appliance.ingest.files import FileBlob, index_files

    read: list[tuple[WalkedFile, FileBlob]] = []
    for item in step:
        try:
            data = await asyncio.to_thread(item.path.read_bytes)
        except OSError as exc:
            counts.failed += 1
            tqdm.write(f"error: {item.path}: {exc.strerror or exc}", file=sys.stderr)
            continue
        read.append((item, FileBlob(item.name, data)))
    outcomes = await index_files(pipeline, collection, [b for _, b in read], metadata)
    for (item, _), outcome in zip(read, outcomes, strict=True):
        if outcome.error is not None:
            counts.failed += 1
            tqdm.write(f"error: {item.path}: {outcome.error.message}", file=sys.stderr)
            continue
        counts.chunks += outcome.chunks
        counts.indexed += outcome.status == "indexed"
        counts.unchanged += outcome.status == "unchanged"


def _steps(files: list[WalkedFile]) -> Iterator[list[WalkedFile]]:
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


async def upgrade_sparse_command(settings: Settings, collection: str) -> int:
    """Give a dense-only collection BM25 sparse vectors from its stored chunk text."""
    from tqdm import tqdm

    async with running(settings) as services:
        collections = services.require_collections()
        info, _ = await collections.get(collection)
        if info.bm25 is not None:
            print(f"collection '{collection}' already has BM25 sparse vectors; nothing to do")
            return 0
        started = time.perf_counter()
        with tqdm(total=info.points_count, unit="chunk", desc=f"upgrading {collection}") as bar:
            info = await collections.enable_sparse(collection, progress=bar.update)
    assert info.bm25 is not None
    print(
        f"collection '{collection}': BM25 sparse vectors ({info.bm25.language}) for "
        f"{info.points_count} chunks in {time.perf_counter() - started:.1f}s; "
        "sparse and hybrid search are on"
    )
    return 0


async def eval_command(
    settings: Settings,
    dataset: Path,
    collection: str,
    k: int,
    exact: bool,
    json_path: Path | None = None,
    models: Sequence[str] = (),
    mode: str | None = None,
) -> int:
    """Index a BEIR folder and compare every search mode on its judged queries (nDCG, R, MRR)."""
    if models:  # one row per model instead: docs/finetuning.md
        from rag_appliance.retrieval.model_compare import models_command

        return await models_command(
            settings, running, dataset, collection, k, models, mode, json_path
        )
    from tqdm import tqdm

    from rag_appliance.ingest.pipeline import Document
    from rag_appliance.remote.eval import print_rows
    from rag_appliance.retrieval.compare import compare
    from rag_appliance.retrieval.evaluation import load_beir

    data = load_beir(dataset)
    async with running(settings) as services:
        pipeline = services.require_pipeline()
        docs = [
            Document(
                data.bodies[doc_id] or data.corpus[doc_id],
                id=doc_id,
                source=doc_id,
                metadata={"title": data.titles[doc_id]} if data.titles.get(doc_id) else {},
            )
            for doc_id in data.corpus
        ]
        with tqdm(total=len(docs), unit="doc", desc="indexing corpus") as bar:
            for start in range(0, len(docs), 256):
                await pipeline.index(collection, docs[start : start + 256])
                bar.update(len(docs[start : start + 256]))
        rows = await compare(
            services.require_retriever(),
            collection,
            data,
            k,
            exact=services.embedding if exact else None,
            contextual=settings.ingest.contextual_chunks,
        )
    judged = sum(1 for q in data.qrels if q in data.queries)
    print(f"{len(data.corpus)} documents, {judged} judged queries, collection '{collection}'")
    print_rows(rows)
    result = {
        "dataset": str(dataset),
        "documents": len(data.corpus),
        "queries": judged,
        "k": k,
        "settings": {
            "model": settings.embedding.model,
            "default_mode": settings.search.mode,
            "default_fusion": settings.search.fusion,
            "contextual_chunks": settings.ingest.contextual_chunks,
            "bm25": settings.ingest.bm25.model_dump(),
            "chunk_max_tokens": settings.ingest.chunk_max_tokens,
        },
        "rows": {row.label: row.metrics for row in rows if row.metrics},
    }
    if json_path is not None:
        text = json.dumps(result, indent=2) + "\n"
        await asyncio.to_thread(json_path.write_text, text, encoding="utf-8")
    print(json.dumps(result["rows"]))
    return 0


async def migrate_command(settings: Settings, target: Settings, names: Sequence[str]) -> int:
    """Copy collections from the configured store to `target`'s, without re-embedding."""
    from tqdm import tqdm

    from rag_appliance.collections.migrate import migrate
    from rag_appliance.store.registry import build_store

    if _same_store(settings, target):
        print("rag-appliance: the target store is the configured store itself", file=sys.stderr)
        return 2
    source = await asyncio.to_thread(build_store, settings)
    try:
        destination = await asyncio.to_thread(build_store, target)
    except BaseException:
        source.close()
        raise
    bars: dict[str, tqdm[Any]] = {}

    def progress(name: str, done: int, total: int) -> None:
        bar = bars.get(name)
        if bar is None:
            bar = bars[name] = tqdm(total=total, unit="chunk", desc=f"copying {name}")
        bar.update(done - bar.n)

    started = time.perf_counter()
    try:
        results = await asyncio.to_thread(
            migrate,
            source,
            destination,
            names or None,
            settings.data_dir / "migrations" / target.store.backend,
            contextual=settings.ingest.contextual_chunks,
            progress=progress,
        )
    finally:
        for bar in bars.values():
            bar.close()
        destination.close()
        source.close()
    for r in results:
        again = " (resumed)" if r.resumed else ""
        print(
            f"collection '{r.collection}': {r.target_count} of {r.source_count} chunks in "
            f"{target.store.backend}{again}; counts match"
        )
    print(f"{len(results)} collections in {time.perf_counter() - started:.1f}s")
    return 0


def _same_store(a: Settings, b: Settings) -> bool:
    if a.store.backend != b.store.backend:
        return False
    if a.store.url or b.store.url:
        return a.store.url == b.store.url
    return a.data_dir.resolve() == b.data_dir.resolve()


async def reindex_command(
    settings: Settings, collection: str, model: str | None, batch: int, resume: bool, drop: bool
) -> int:
    """Re-embed a collection with `model` into its next version and switch its alias (or, with
    `drop`, delete its old versions); see collections/reindex.py."""
    from tqdm import tqdm

    from rag_appliance.collections.reindex import drop_old, reindex
    from rag_appliance.embedding.service import EmbedParams
    from rag_appliance.errors import SettingsError
    from rag_appliance.store.registry import build_store

    state_dir = settings.data_dir / "reindex"
    if model is None:
        if not drop:
            raise SettingsError("reindex needs --model NEW (or --drop-old)")
        store = await asyncio.to_thread(build_store, settings)
        try:
            dropped = await asyncio.to_thread(drop_old, store, collection, state_dir)
        finally:
            store.close()
        print(f"collection '{collection}': dropped {', '.join(dropped) or 'no old versions'}")
        return 0
    most = settings.embedding.max_inputs_per_request
    if not 1 <= batch <= most:
        raise SettingsError(f"--batch must be 1..{most} (embedding.max_inputs_per_request)")
    # The new model's own profile: the old one's name, prefixes and pooling do not apply to it.
    embedding = settings.embedding.model_copy(
        update={"model": model, "profile": None, "served_name": None}
    )
    settings = settings.model_copy(update={"embedding": embedding})
    started = time.perf_counter()
    bars: dict[str, tqdm[Any]] = {}

    def progress(phase: str, done: int, total: int) -> None:
        bar = bars.get(phase)
        if bar is None:
            bar = bars[phase] = tqdm(total=total, unit="chunk", desc=f"{phase} {collection}")
        bar.update(done - bar.n)

    async with running(settings) as services:
        provenance = services.require_collections().provenance
        loop = asyncio.get_running_loop()

        def embed(texts: list[str]) -> Any:  # on reindex's thread; the engine runs on the loop
            call = services.embedding.embed(EmbedParams(texts, "document", truncate=True))
            return asyncio.run_coroutine_threadsafe(call, loop).result().vectors

        assert services.store is not None
        try:
            result = await asyncio.to_thread(
                reindex,
                services.store,
                embed,
                provenance,
                collection,
                state_dir,
                batch=batch,
                resume=resume,
                contextual=settings.ingest.contextual_chunks,
                progress=progress,
            )
        finally:
            for bar in bars.values():
                bar.close()
        if drop and result.switched:
            await asyncio.to_thread(drop_old, services.store, collection, state_dir)
    if not result.switched:
        print(f"collection '{collection}' already holds vectors of '{result.model}'; nothing to do")
        return 0
    kept = "dropped" if drop else "kept (--drop-old deletes it)"
    again = " (resumed)" if result.resumed else ""
    print(
        f"collection '{collection}': {result.chunks} chunks embedded with '{result.model}' into "
        f"'{result.version}'{again} in {time.perf_counter() - started:.1f}s; the alias now points "
        f"to it; '{result.previous}' {kept}. Serve it with embedding.model: {model}"
    )
    return 0
