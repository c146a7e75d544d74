"""Blue/green re-indexing with a new embedding model: `rag-appliance reindex`.

`kb` is an alias for its current version (`kb__v2`). A re-index embeds the current version's
stored chunk texts again with the new model (document side, with the contextual title, as the
pipeline does; no file is parsed again) into a shadow collection, the next version, created with
the new model's provenance and the source's BM25 config. Once the shadow holds as many chunks as
the source's committed ones, the alias is repointed in one atomic step: searches see the old
version or the new one, never a mix. The old version stays until `--drop-old`.

A collection made before aliases (`kb` itself a collection) is first adopted: copied with its
vectors (nothing embedded) to `kb__v1`, counts checked, then replaced by the alias `kb` ->
`kb__v1`; between that deletion and the alias a request may get a 404. Later switches are atomic.

A checkpoint under `state_dir` records the shadow and the scroll offset after each page written;
`resume` continues from there (a page written twice is harmless: same ids). Without `resume` an
interrupted shadow, never served, is dropped and built again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag_appliance.collections.migrate import COMMITTED, _load, _save
from rag_appliance.errors import Conflict, InvalidRequest
from rag_appliance.ingest.pipeline import chunk_context, contextual_text
from rag_appliance.store.aliases import version_name, version_of
from rag_appliance.store.base import Point, Provenance, Record, VectorStore
from rag_appliance.store.validation import check_collection_name

PAGE = 64
Embed = Callable[[list[str]], np.ndarray]  # document-side vectors, in order
Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class Reindexed:
    """One re-index: the alias, the version it now points to, the one it pointed to (kept)."""

    collection: str
    version: str
    previous: str
    model: str
    chunks: int
    resumed: bool
    switched: bool  # False: the collection already held this model's vectors


def reindex(
    store: VectorStore,
    embed: Embed,
    provenance: Provenance,
    name: str,
    state_dir: Path,
    *,
    batch: int = PAGE,
    resume: bool = False,
    contextual: bool = True,
    progress: Progress | None = None,
) -> Reindexed:
    """Rebuild collection `name` with the vectors `embed` makes (see the module docstring).

    `store` is the raw store (no alias resolution); `provenance` is the new model's.
    """
    check_collection_name(name)
    state_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = state_dir / f"{name}.json"
    state = _load(checkpoint) or {}
    current = _current(store, name, state)
    source = store.get_collection(current)
    if source.provenance == provenance:
        return Reindexed(name, current, current, provenance.model, 0, False, switched=False)
    taken = _versions(store, name)
    shadow = state.get("shadow")
    resumed = (
        resume
        and isinstance(shadow, str)
        and state.get("model") == provenance.model
        and state.get("source") == current
        and shadow in taken
    )
    if not resumed:
        if isinstance(shadow, str) and shadow in taken and shadow != current:
            store.delete_collection(shadow)  # never served
            taken.remove(shadow)
        shadow = version_name(name, max([_n(v) for v in taken] + [1]) + 1)
        if current == name:  # adopt the plain collection first, as version 1
            v1 = version_name(name, 1)
            current = _adopt(store, name, v1, checkpoint, contextual, progress)
        state = {"shadow": shadow, "model": provenance.model, "source": current}
        state |= {"offset": None, "done": 0}
        _save(checkpoint, state)
    assert isinstance(shadow, str)
    store.create_collection(shadow, provenance, bm25=source.bm25)
    total = store.count(current, COMMITTED)
    offset: str | None = state["offset"]
    done = int(state["done"])
    filled = bool(state.get("filled"))  # every page written: only the check and switch left
    while not filled:
        records, offset = store.scroll(current, COMMITTED, batch, offset)
        texts = [_embedded_text(r, contextual) for r in records]
        if records:
            vectors = embed(texts)
            points = [
                Point(r.id, v, r.payload, text_for_sparse=t)
                for r, v, t in zip(records, vectors, texts, strict=True)
            ]
            store.upsert(shadow, points)
        done += len(records)
        filled = offset is None
        _save(checkpoint, state | {"offset": offset, "done": done, "filled": filled})
        if progress is not None:
            progress("embedding", done, total)
    _verify(store, current, shadow, checkpoint)
    store.set_alias(name, shadow)
    checkpoint.unlink(missing_ok=True)
    return Reindexed(name, shadow, current, provenance.model, done, bool(resumed), switched=True)


def drop_old(store: VectorStore, name: str, state_dir: Path) -> list[str]:
    """Delete every version of `name` but the current one (and an interrupted shadow)."""
    check_collection_name(name)
    current = store.aliases().get(name)
    if current is None:
        raise InvalidRequest(
            f"collection '{name}' has not been re-indexed (it is no alias): no old versions",
            param="collection",
        )
    dropped = [v for v in _versions(store, name) if v != current]
    for version in dropped:
        store.delete_collection(version)
    (state_dir / f"{name}.json").unlink(missing_ok=True)
    return dropped


def _current(store: VectorStore, name: str, state: dict[str, Any]) -> str:
    """The collection `name` stands for now; finishes an adoption a crash interrupted."""
    table = store.aliases()
    if name in table:
        return table[name]
    adopted = state.get("adopted")
    names = {c.name for c in store.list_collections()}
    if name not in names and isinstance(adopted, str) and adopted in names:
        store.set_alias(name, adopted)  # it died before the alias
        return adopted
    store.get_collection(name)  # 404 when there is no such thing
    return name


def _adopt(
    store: VectorStore,
    name: str,
    version: str,
    checkpoint: Path,
    contextual: bool,
    progress: Progress | None,
) -> str:
    """Copy collection `name` whole to `version`, then make `name` an alias for it."""
    if version in _versions(store, name):
        store.delete_collection(version)  # an interrupted copy
    info = store.get_collection(name)
    store.create_collection(version, info.provenance, bm25=info.bm25)
    offset: str | None = None
    copied = 0
    while True:
        records, offset = store.scroll(name, None, 512, offset, with_vectors=True)
        points = [_copied(r, contextual) for r in records]
        if points:
            store.upsert(version, points)
        copied += len(points)
        if progress is not None:
            progress("copying", copied, info.points_count)
        if offset is None:
            break
    have, want = store.count(version), store.count(name)
    if have != want:
        store.delete_collection(version)
        raise Conflict(
            f"collection '{name}' changed while it was copied to '{version}' ({want} points, "
            f"{have} copied); nothing was switched. Stop writing to it and run reindex again.",
            param="collection",
        )
    _save(checkpoint, {"adopted": version})
    store.delete_collection(name)
    store.set_alias(name, version)
    return version


def _verify(store: VectorStore, source: str, shadow: str, checkpoint: Path) -> None:
    """Conflict (the shadow and checkpoint dropped) unless the shadow holds every chunk."""
    have, want = store.count(shadow), store.count(source, COMMITTED)
    if have != want:
        store.delete_collection(shadow)
        checkpoint.unlink(missing_ok=True)
        raise Conflict(
            f"collection '{source}' holds {want} chunks but its re-index '{shadow}' {have}: it "
            "changed meanwhile; nothing was switched. Stop writing to it and run reindex again.",
            param="collection",
        )


def _embedded_text(record: Record, contextual: bool) -> str:
    """What the pipeline embedded and BM25-indexed for this chunk: its title, then its text."""
    text = record.payload.get("text")
    if not isinstance(text, str):
        raise InvalidRequest(
            f"chunk {record.id} has no stored text, so it cannot be embedded again",
            param="collection",
        )
    metadata = record.payload.get("metadata")
    return contextual_text(
        chunk_context(metadata if isinstance(metadata, dict) else {}, contextual), text
    )


def _copied(record: Record, contextual: bool) -> Point:
    if record.vector is None:
        raise InvalidRequest(f"point {record.id} came back without its vector", param="collection")
    text = record.payload.get("text")
    sparse = _embedded_text(record, contextual) if isinstance(text, str) else None
    return Point(record.id, record.vector, record.payload, text_for_sparse=sparse)


def _versions(store: VectorStore, name: str) -> list[str]:
    """The physical versions of `name` (`name__v<n>`), oldest first."""
    found = ((version_of(c.name), c.name) for c in store.list_collections())
    return [c for v, c in sorted((v[1], c) for v, c in found if v and v[0] == name)]


def _n(version: str) -> int:
    found = version_of(version)
    return 0 if found is None else found[1]
