"""The search log: one JSON line per search, RAG answer and feedback, rotated by size.

Events (searches, chat retrievals) are queued and written by a background thread (the
stdlib's QueueListener in front of a RotatingFileHandler), so a search never waits on the disk.
Feedback is written before its request is answered: a 200 means it is in the file.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from logging.handlers import QueueListener, RotatingFileHandler
from pathlib import Path
from typing import Any

import orjson

from rag_appliance.auth.access import current_principal
from rag_appliance.errors import ServiceUnavailable
from rag_appliance.ingest.chunking import stable_chunk_id
from rag_appliance.retrieval.retriever import SearchHit
from rag_appliance.settings import SearchLogSettings, Settings

log = logging.getLogger(__name__)

LOG_DIR = Path("logs") / "search"
FILE_NAME = "search.jsonl"
EVENT_TYPES = ("search", "chat")
# Events waiting for the writer thread; past this (a stalled disk) new ones are dropped.
QUEUE_SIZE = 10_000


def log_dir(data_dir: Path) -> Path:
    """Where the search log of a data dir lives."""
    return data_dir / LOG_DIR


def log_files(directory: Path) -> list[Path]:
    """The log's files, oldest first: search.jsonl.N ... search.jsonl.1, search.jsonl."""
    rotated = []
    for path in directory.glob(FILE_NAME + ".*"):
        suffix = path.name.removeprefix(FILE_NAME + ".")
        if suffix.isdigit():
            rotated.append((int(suffix), path))
    live = directory / FILE_NAME
    return [p for _, p in sorted(rotated, reverse=True)] + ([live] if live.is_file() else [])


def read_records(
    paths: Iterable[Path],
    bad: list[int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """The records of these files in order; unreadable lines are skipped (counted in `bad`);
    `progress` gets the bytes read, every thousand lines or so."""
    for path in paths:
        try:
            handle = path.open("rb")
        except FileNotFoundError:  # rotated away meanwhile
            continue
        read = 0
        with handle:
            for n, line in enumerate(handle, 1):
                read += len(line)
                if progress is not None and n % 1000 == 0:
                    progress(read)
                    read = 0
                record = parse_line(line)
                if record is None:
                    if line.strip() and bad is not None:
                        bad[0] += 1
                    continue
                yield record
        if progress is not None and read:
            progress(read)


def parse_line(line: bytes) -> dict[str, Any] | None:
    """One log line as a record, or None (blank, cut short by a crash, or not ours)."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("type"), str) else None


def new_id(prefix: str) -> str:
    """A fresh event id, e.g. `search-1f0c...`."""
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> str:
    """The record time: ISO 8601 UTC with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def chunk_id(hit: SearchHit) -> str:
    """The chunk's id: the store's point id of (doc_id, chunk_index)."""
    return stable_chunk_id(hit.doc_id, hit.chunk_index)


def hit_records(hits: Sequence[SearchHit]) -> list[dict[str, Any]]:
    """The hits as logged: rank (1 = best), chunk id, document, chunk index, score."""
    return [
        {
            "rank": rank,
            "chunk_id": chunk_id(h),
            "doc_id": h.doc_id,
            "chunk_index": h.chunk_index,
            "score": float(h.score),
        }
        for rank, h in enumerate(hits, 1)
    ]


@dataclass(frozen=True)
class EventRef:
    """What feedback needs of a logged event: its collection and what it returned."""

    id: str
    collection: str
    chunk_ids: tuple[str, ...]
    doc_ids: tuple[str, ...]

    @classmethod
    def of(cls, record: dict[str, Any]) -> EventRef:
        """The reference of an event record."""
        hits = [h for h in record.get("hits") or () if isinstance(h, dict)]
        return cls(
            str(record["id"]),
            str(record.get("collection", "")),
            tuple(str(h.get("chunk_id")) for h in hits),
            tuple(dict.fromkeys(str(h.get("doc_id")) for h in hits)),
        )


class SearchLog:
    """The append-only, size-rotated JSONL log of one data dir, and its recent events."""

    def __init__(self, directory: Path, settings: SearchLogSettings) -> None:
        self.directory = directory
        self.settings = settings
        self.path = directory / FILE_NAME
        self._queue: queue.Queue[logging.LogRecord] = queue.Queue(QUEUE_SIZE)
        self._handler: RotatingFileHandler | None = None
        self._listener: QueueListener | None = None
        # Recent events by id, oldest first: feedback on them needs no file read.
        self._recent: OrderedDict[str, EventRef] = OrderedDict()
        self.dropped = 0  # events lost to a full queue (a stalled disk)

    @classmethod
    def from_settings(cls, settings: Settings) -> SearchLog | None:
        """The configured log, or None when search_log.enabled is off."""
        if not settings.search_log.enabled:
            return None
        return cls(log_dir(settings.data_dir), settings.search_log)

    def start(self) -> None:
        """Open the live file and start the writer thread."""
        if self._listener is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(
            self.path,
            maxBytes=self.settings.max_bytes,
            backupCount=self.settings.backups,
            encoding="utf-8",
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._handler = handler
        self._listener = QueueListener(self._queue, handler)
        self._listener.start()

    def stop(self) -> None:
        """Write what is queued, stop the thread and close the file."""
        if self._listener is not None:
            self._listener.stop()  # drains the queue first
            self._listener = None
        if self._handler is not None:
            self._handler.close()
            self._handler = None

    def record_search(
        self, event_id: str, collection: str, query: str, hits: Sequence[SearchHit], **extra: Any
    ) -> None:
        """Log a /v1/search call (never raises: logging must not fail a search)."""
        self._event(
            {"type": "search", "id": event_id, "collection": collection, "query": query} | extra,
            hits,
        )

    def record_chat(
        self,
        event_id: str,
        collection: str,
        query: str,
        hits: Sequence[SearchHit],
        cited: Iterable[int],
        **extra: Any,
    ) -> None:
        """Log a RAG answer: the retrieval query, the passages given, the ones it cited."""
        numbers = sorted({n for n in cited if 1 <= n <= len(hits)})
        chunks = [chunk_id(hits[n - 1]) for n in numbers]
        docs = list(dict.fromkeys(hits[n - 1].doc_id for n in numbers))
        record = {"type": "chat", "id": event_id, "collection": collection, "query": query}
        record |= extra | {"cited": {"chunk_ids": chunks, "doc_ids": docs}}
        self._event(record, hits)

    def _event(self, fields: dict[str, Any], hits: Sequence[SearchHit]) -> None:
        try:
            principal = current_principal()
            record = {"time": now(), **fields, "key": principal.name if principal else None}
            record["hits"] = hit_records(hits)
            line = _line(record)
        except Exception:  # e.g. text that has no JSON form; the search itself is fine
            log.warning("search log: could not record %s", fields.get("id"), exc_info=True)
            return
        try:
            self._queue.put_nowait(logging.makeLogRecord({"msg": line}))
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("search log: writer behind, %d events dropped", self.dropped)
            return
        self._remember(EventRef.of(record))

    def _remember(self, ref: EventRef) -> None:
        self._recent[ref.id] = ref
        while len(self._recent) > self.settings.index_size:
            self._recent.popitem(last=False)

    async def write(self, record: dict[str, Any]) -> None:
        """Append one record now (feedback): it is in the file when this returns."""
        handler = self._handler
        if handler is None:  # not started yet, or stopping
            raise ServiceUnavailable("the search log is not running; try again in a moment")
        entry = logging.makeLogRecord({"msg": _line(record)})
        # The handler's own lock orders this with the writer thread's appends and rotations.
        await asyncio.to_thread(handler.handle, entry)

    def known(self, event_id: str) -> bool:
        """Whether the event is among the recent ones (no file read)."""
        return event_id in self._recent

    async def find(self, event_id: str) -> EventRef | None:
        """The logged event with this id: recent ones from memory, older ones from the files."""
        ref = self._recent.get(event_id)
        if ref is None:
            ref = await asyncio.to_thread(self._scan, event_id)
        return ref

    def _scan(self, event_id: str) -> EventRef | None:
        needle = orjson.dumps(event_id)  # the id as it appears, quoted, in its line
        for path in reversed(log_files(self.directory)):  # newest first
            try:
                handle = path.open("rb")
            except FileNotFoundError:
                continue
            with handle:
                for line in handle:
                    if needle not in line:
                        continue
                    record = parse_line(line)
                    if record and record["type"] in EVENT_TYPES and record.get("id") == event_id:
                        return EventRef.of(record)
        return None


def _line(record: dict[str, Any]) -> str:
    return orjson.dumps(record).decode()
