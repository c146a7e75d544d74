"""One way from files to indexed documents, for HTTP uploads, the web UI and the CLI alike.

The document-id rule (docs/ingestion.md): a file's document id, and its `source`, is the name the
caller gave it, cleaned by `safe_name`. Browsers, curl and the UI give a file's base name; the
CLI gives the path relative to the folder it was handed (the base name for a file named
directly). So a file reaches the same id whichever way it comes in, and re-sending it replaces
the earlier version.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rag_appliance.auth.access import authorize_write
from rag_appliance.collections.service import CollectionService
from rag_appliance.errors import AppError, CollectionNotFound
from rag_appliance.ingest.chunking import ChunkingParams
from rag_appliance.ingest.parsers import ParsedDocument
from rag_appliance.ingest.pipeline import Document, IndexPipeline

# Files parsed and indexed per pipeline call: enough chunks to fill embedding batches, few enough
# that progress shows and parsed text does not pile up.
FILES_PER_BATCH = 32
FALLBACK_NAME = "upload"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_DRIVE = re.compile(r"[A-Za-z]:")


@dataclass(slots=True)
class FileBlob:
    """A named file's bytes, with the media type its sender declared (if any)."""

    name: str
    data: bytes
    media_type: str | None = None

    def take(self) -> bytes:
        """The bytes, handed over: the blob keeps none (index_files takes them to parse)."""
        data, self.data = self.data, b""
        return data


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file: indexed, unchanged, or an error (that file only)."""

    filename: str
    status: str  # "indexed" | "unchanged" | "error"
    doc_id: str | None = None
    chunks: int = 0
    error: AppError | None = None


def safe_name(filename: str | None) -> str:
    """A file name as a document id: a clean relative POSIX path, never one that leaves its folder.

    Backslashes count as separators; NUL, control characters and empty or "." segments go;
    undecodable bytes become U+FFFD. A name that is absolute (a client's full path, e.g. from an
    old browser on Windows) or climbs with ".." keeps only its base name. Empty: "upload".
    """
    raw = _CONTROL.sub("", _decodable(filename or "")).strip()
    drive = _DRIVE.match(raw) is not None
    rooted = drive or raw.startswith(("/", "\\"))
    parts = [part.strip() for part in raw[2 if drive else 0 :].replace("\\", "/").split("/")]
    kept = [part for part in parts if part not in ("", ".")]
    if rooted or ".." in kept:
        kept = [part for part in kept if part != ".."][-1:]
    name = "/".join(kept)
    # A name left starting like a drive would lose it when cleaned again ("/C:x" -> "C:x").
    return safe_name(name) if _DRIVE.match(name) else name or FALLBACK_NAME


def file_metadata(
    name: str, parsed: ParsedDocument, common: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The metadata stored with a file's chunks: the caller's, then the file's own fields."""
    meta = {**(common or {}), "filename": name.rsplit("/", 1)[-1], "media_type": parsed.media_type}
    if parsed.title:
        meta["title"] = parsed.title
    return meta


async def index_files(
    pipeline: IndexPipeline,
    collection: str,
    blobs: Sequence[FileBlob],
    metadata: Mapping[str, Any] | None = None,
    params: ChunkingParams | None = None,
    progress: Callable[[FileOutcome], None] | None = None,
) -> list[FileOutcome]:
    """Parse and index files; one outcome per file, in order (a bad file fails only itself).

    Each file is parsed in the pipeline's sandbox (a worker process, killed past its limits);
    its blob's bytes are taken for it (`FileBlob.take`), so a large upload is not held while
    its text is embedded.
    Collection-level errors (bad name, another model's collection) and indexing failures raise.
    `progress` hears each outcome as soon as it is known.
    """
    authorize_write(collection)  # before any parsing (the pipeline checks again as it writes)
    await _check_target(pipeline.collections, collection)
    outcomes: list[FileOutcome | None] = [None] * len(blobs)

    def settle(slot: int, outcome: FileOutcome) -> None:
        outcomes[slot] = outcome
        if progress is not None:
            progress(outcome)

    for start in range(0, len(blobs), FILES_PER_BATCH):
        group = [
            (slot, safe_name(blob.name), blob)
            for slot, blob in enumerate(blobs[start : start + FILES_PER_BATCH], start)
        ]
        ready: list[tuple[int, Document]] = []
        for (slot, name, _), found in zip(group, await _parse_all(pipeline, group), strict=True):
            if isinstance(found, AppError):
                settle(slot, FileOutcome(name, "error", error=found))
                continue
            meta = file_metadata(name, found, metadata)
            ready.append((slot, Document(found.text, id=name, metadata=meta, source=name)))
        if not ready:
            continue
        results = await pipeline.index(collection, [doc for _, doc in ready], params)
        by_id = {r.doc_id: r for r in results}  # one result per id: the last file of a name wins
        for slot, doc in ready:
            result = by_id[doc.id or ""]
            settle(slot, FileOutcome(doc.id or "", result.status, result.doc_id, result.chunks))
    return [outcome for outcome in outcomes if outcome is not None]


async def _parse_all(
    pipeline: IndexPipeline, group: Sequence[tuple[int, str, FileBlob]]
) -> list[ParsedDocument | AppError]:
    """Each (slot, clean name, file)'s text or its error, in order, parsed side by side by the
    sandbox's workers (never more at once than workers: a parse's time limit starts when sent)."""
    sandbox = pipeline.sandbox
    room = asyncio.Semaphore(max(1, sandbox.workers))

    async def one(name: str, blob: FileBlob) -> ParsedDocument | AppError:
        async with room:
            try:
                return await sandbox.parse(blob.take(), name, blob.media_type)
            except AppError as exc:
                return exc

    # A TaskGroup: an unexpected error (or a cancel) stops the other parses too.
    async with asyncio.TaskGroup() as tasks:
        parsing = [tasks.create_task(one(name, blob)) for _, name, blob in group]
    return [task.result() for task in parsing]


async def _check_target(collections: CollectionService, name: str) -> None:
    # A bad name or another model's collection fails before any parsing; a missing one is
    # created by the first file that parses, so a batch of bad files leaves nothing behind.
    with contextlib.suppress(CollectionNotFound):
        await collections.check(name)


def _decodable(raw: str) -> str:
    # File-system names carry undecodable bytes as lone surrogates; no store or JSON takes those.
    try:
        return raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", raw)
