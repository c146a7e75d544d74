"""Copy collections between two stores without embedding anything again: `rag-appliance migrate`.

Each collection is created in the target with the source's provenance and BM25 config, then
its committed points are copied page by page with their dense vectors and payloads; the target
computes its sparse vectors (BM25, or PostgreSQL's text search) from each chunk's text as it
would when indexing. Points land uncommitted (invisible to search) and are committed in one
operation once every page is in and the counts agree, so the target never serves half a copy.

A checkpoint per collection under `state_dir` records the scroll offset of the last page
written; a run that stopped (Ctrl-C, a crash, a lost connection) resumes there. Upserting the
same ids again is harmless, so a page copied twice changes nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_appliance.errors import Conflict, InvalidRequest
from rag_appliance.ingest.pipeline import chunk_context, contextual_text
from rag_appliance.store.base import Filter, Match, Point, VectorStore

COMMITTED = Filter(must=(Match("committed", (True,)),))
UNCOMMITTED = Filter(must=(Match("committed", (False,)),))
PAGE = 512


@dataclass(frozen=True)
class Copied:
    """One collection's migration: points copied, and the counts compared at the end."""

    collection: str
    copied: int
    source_count: int
    target_count: int
    resumed: bool


def migrate(
    source: VectorStore,
    target: VectorStore,
    names: Sequence[str] | None,
    state_dir: Path,
    *,
    contextual: bool = True,
    page: int = PAGE,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[Copied]:
    """Copy `names` (default: every collection) from source to target; see the module doc.

    `contextual` is ingest.contextual_chunks: whether BM25 indexes chunks with their title.
    `progress(collection, done, total)` is called after every page.
    """
    available = {c.name: c for c in source.list_collections()}
    wanted = list(names) if names else sorted(available)
    missing = [n for n in wanted if n not in available]
    if missing:
        raise InvalidRequest(
            f"not in the source store: {', '.join(missing)}; it holds "
            f"{', '.join(sorted(available)) or 'no collections'}",
            param="collection",
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    return [
        _copy(source, target, n, state_dir / f"{n}.json", contextual, page, progress)
        for n in wanted
    ]


def _copy(
    source: VectorStore,
    target: VectorStore,
    name: str,
    checkpoint: Path,
    contextual: bool,
    page: int,
    progress: Callable[[str, int, int], None] | None,
) -> Copied:
    info = source.get_collection(name)
    total = source.count(name, COMMITTED)
    state = _load(checkpoint)
    resumed = state is not None
    if state is None:
        target.create_collection(name, info.provenance, bm25=info.bm25)
        if target.count(name) and not _same_copy(target, name):
            raise Conflict(
                f"collection '{name}' already holds points in the target store; migrate into "
                "a new collection (or delete it there first)",
                param="collection",
            )
        state = {"offset": None, "copied": 0}
    else:
        target.get_collection(name)  # created by the run being resumed
    offset: str | None = state["offset"]
    copied: int = state["copied"]
    while True:
        records, next_offset = source.scroll(name, COMMITTED, page, offset, with_vectors=True)
        points = [_point(r.id, r.vector, r.payload, contextual) for r in records]
        if points:
            target.upsert(name, points)
        copied += len(points)
        offset = next_offset
        _save(checkpoint, {"offset": offset, "copied": copied})
        if progress is not None:
            progress(name, copied, total)
        if offset is None:
            break
    copies = target.count(name, UNCOMMITTED) + target.count(name, COMMITTED)
    if copies != total:
        raise Conflict(
            f"collection '{name}': the source holds {total} committed points but the target "
            f"{copies} after copying; nothing was committed there. Run migrate again.",
            param="collection",
        )
    target.set_payload(name, UNCOMMITTED, {"committed": True})
    checkpoint.unlink(missing_ok=True)
    return Copied(name, copied, total, target.count(name, COMMITTED), resumed)


def _point(pid: str, vector: Any, payload: dict[str, Any], contextual: bool) -> Point:
    if vector is None:
        raise InvalidRequest(f"point {pid} came back without its vector", param="collection")
    text = payload.get("text")
    sparse = None
    if isinstance(text, str):
        metadata = payload.get("metadata")
        context = chunk_context(metadata if isinstance(metadata, dict) else {}, contextual)
        sparse = contextual_text(context, text)
    # Uncommitted until the whole collection is in: the target never serves half a copy.
    return Point(pid, vector, {**payload, "committed": False}, text_for_sparse=sparse)


def _same_copy(target: VectorStore, name: str) -> bool:
    """Whether the target's points are all uncommitted: a copy that failed its final check."""
    return target.count(name, COMMITTED) == 0


def _load(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    value = json.loads(path.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else None


def _save(path: Path, state: dict[str, Any]) -> None:
    # Written whole and renamed: a crash mid-write leaves the previous checkpoint.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    os.replace(tmp, path)
