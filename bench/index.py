"""Bulk indexing: end-to-end chunks/s (chunk -> embed -> upsert) vs the embedding-only rate.

    python bench/index.py [--chunks 20000] [--store edge|memory]

Builds documents of ~1,000 tokens from the benchmark corpus, indexes them through the
appliance's own IndexPipeline into a fresh collection, then embeds the very same chunk texts
through the same engine without chunking or storing: the difference is the share lost to
parsing, chunking and the store. Both runs are in this process, one after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from corpus import load_corpus
from lib.results import dated_path, write_json

from rag_appliance.embedding.service import EmbedParams
from rag_appliance.ingest.chunking import chunk_text
from rag_appliance.ingest.pipeline import Document
from rag_appliance.local_commands import running
from rag_appliance.settings import load_settings


def make_documents(target_chunks: int, tokenizer: Any, params: Any) -> list[Document]:
    """Documents of seven medium paragraphs each, until they chunk to the target count."""
    paragraphs = load_corpus()["medium"]
    docs: list[Document] = []
    chunks = 0
    i = 0
    while chunks < target_chunks:
        parts = [paragraphs[(i * 7 + j) % len(paragraphs)] for j in range(7)]
        doc = Document("\n\n".join(parts) + f"\n\nDocument {i}.", id=f"doc-{i}")
        chunks += len(chunk_text(doc.text, tokenizer, params))
        docs.append(doc)
        i += 1
    return docs


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Index, then embed the same chunks alone; return the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(args.config).model_copy(update={"data_dir": Path(tmp)})
        async with running(settings) as services:
            pipeline = services.require_pipeline()
            docs = make_documents(args.chunks, pipeline.tokenizer, pipeline.chunking())
            started = time.perf_counter()
            total_chunks = 0
            for start in range(0, len(docs), args.docs_per_call):
                results = await pipeline.index("bench", docs[start : start + args.docs_per_call])
                total_chunks += sum(r.chunks for r in results)
                done = start + args.docs_per_call
                print(f"  indexed {min(done, len(docs))}/{len(docs)} docs", file=sys.stderr)
            end_to_end = time.perf_counter() - started
            params = pipeline.chunking()
            texts = [c.text for d in docs for c in chunk_text(d.text, pipeline.tokenizer, params)]
            started = time.perf_counter()
            batch = settings.ingest.embed_batch
            for start in range(0, len(texts), batch):
                await services.embedding.embed(
                    EmbedParams(inputs=texts[start : start + batch], input_type="document")
                )
            embed_only = time.perf_counter() - started
            info = services.embedding.encoder
            stored = services.store.count("bench") if services.store else 0
    return {
        "documents": len(docs),
        "chunks": total_chunks,
        "stored_points": stored,
        "end_to_end_s": end_to_end,
        "end_to_end_chunks_per_s": total_chunks / end_to_end,
        "embed_only_s": embed_only,
        "embed_only_chunks_per_s": len(texts) / embed_only,
        "share_lost": 1 - (total_chunks / end_to_end) / (len(texts) / embed_only),
        "device": getattr(getattr(info, "info", None), "device", None),
        "dtype": getattr(getattr(info, "info", None), "dtype", None),
        "store": settings.store.backend,
    }


def main() -> None:
    """Parse flags, run, print a table and save the raw figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20_000, help="target chunk count")
    parser.add_argument("--docs-per-call", type=int, default=256, help="documents per index call")
    parser.add_argument("--config", default=None, help="YAML profile (default: CPU profile)")
    args = parser.parse_args()
    figures = asyncio.run(run(args))
    command = "python " + shlex.join(["bench/index.py", *sys.argv[1:]])
    print(f"Machine: {platform.processor() or platform.machine()}, command: `{command}`")
    print(
        f"{figures['documents']} documents -> {figures['chunks']} chunks "
        f"({figures['stored_points']} points stored), {figures['device']} {figures['dtype']}, "
        f"store {figures['store']}"
    )
    print("| path | seconds | chunks/s |")
    print("|---|---:|---:|")
    print(
        f"| end to end (chunk + embed + upsert) | {figures['end_to_end_s']:.1f} | "
        f"{figures['end_to_end_chunks_per_s']:.1f} |"
    )
    print(
        f"| embedding only, same chunks | {figures['embed_only_s']:.1f} | "
        f"{figures['embed_only_chunks_per_s']:.1f} |"
    )
    print(f"share lost to chunking and the store: {100 * figures['share_lost']:.1f}%")
    out = dated_path("index", str(figures["device"]), dt.datetime.now(), keep_earlier=False)
    write_json(out, {"command": command, **figures})
    print(f"raw: {out}")


if __name__ == "__main__":
    main()
