"""Training pairs from the search log: JSONL `{"query", "positive", "negative"?}` of chunk texts.

Positives are chunks given positive feedback and chunks a RAG answer cited (unless given
negative feedback). Negatives are chunks given negative feedback, else, for an answer that cited
something, an uncited chunk it was given at a high rank from another document (the retriever
preferred it; the answer did not need it). Texts are read from the store as it is now.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from rag_appliance.collections.service import COMMITTED
from rag_appliance.errors import AppError, InvalidRequest, NotFound
from rag_appliance.feedback.log import EVENT_TYPES, log_dir, log_files, read_records
from rag_appliance.settings import Settings
from rag_appliance.store.aliased import aliased
from rag_appliance.store.base import Filter, Match, VectorStore

HIGH_RANK = 3  # an uncited passage ranked this high in a cited answer is a hard negative
MAX_NEGATIVES = 3  # explicit negatives paired with each positive
_DOCS_PER_SCROLL = 64
_PAGE = 256


@dataclass
class PairsExport:
    """The pairs, and what went into them."""

    pairs: list[dict[str, str]] = field(default_factory=list)
    events: int = 0  # searches and answers read (after --collection / --since)
    feedback: int = 0  # feedback records applied to those events
    missing_chunks: int = 0  # chunks no longer in the store (deleted or re-indexed away)
    bad_lines: int = 0  # unreadable log lines (e.g. cut short by a crash)

    def summary(self) -> str:
        """One line for the terminal."""
        negatives = sum(1 for p in self.pairs if "negative" in p)
        return (
            f"{len(self.pairs)} pairs ({negatives} with a negative) from {self.events} "
            f"events and {self.feedback} feedback records; {self.missing_chunks} chunks no "
            f"longer in the store, {self.bad_lines} unreadable log lines"
        )


@dataclass(frozen=True)
class _Hit:
    chunk_id: str
    doc_id: str
    rank: int


@dataclass
class _Event:
    collection: str
    query: str
    hits: list[_Hit]
    cited: set[str]
    labels: dict[str, str] = field(default_factory=dict)  # chunk id -> the latest label

    def apply(self, feedback: dict[str, Any]) -> None:
        label = feedback.get("label")
        if label not in ("positive", "negative"):
            return
        for cid in feedback.get("chunk_ids") or ():
            self.labels[str(cid)] = label
        for doc in feedback.get("doc_ids") or ():
            of_doc = [h for h in self.hits if h.doc_id == doc]
            # A document judged relevant: its best chunk is the positive; judged irrelevant:
            # every chunk of it the event returned is a negative.
            for h in of_doc[:1] if label == "positive" else of_doc:
                self.labels[h.chunk_id] = label

    def plan(self) -> list[tuple[_Hit, list[_Hit]]]:
        """(positive, its negatives) for each positive of the event."""
        positives = [
            h
            for h in self.hits
            if self.labels.get(h.chunk_id) == "positive"
            or (h.chunk_id in self.cited and self.labels.get(h.chunk_id) != "negative")
        ]
        explicit = [h for h in self.hits if self.labels.get(h.chunk_id) == "negative"]
        documents = {h.doc_id for h in positives}
        implicit = [
            h
            for h in self.hits
            if self.cited
            and h.rank <= HIGH_RANK
            and h.chunk_id not in self.cited
            and h.chunk_id not in self.labels
            and h.doc_id not in documents
        ]
        negatives = explicit[:MAX_NEGATIVES] or implicit[:1]
        return [(p, negatives) for p in positives]


def parse_since(value: str | None) -> datetime | None:
    """`--since`: an ISO date or date-time (UTC unless it says otherwise); 400 otherwise."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(
            f"--since {value!r} is not an ISO date or time, e.g. 2026-12-01 or "
            "2026-12-01T08:00:00Z",
            param="since",
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def export_pairs(
    settings: Settings,
    store: VectorStore | None = None,
    *,
    collection: str | None = None,
    since: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> PairsExport:
    """The pairs of the data dir's search log (blocking); `store` defaults to the configured
    one (opened and closed here); `progress` gets bytes of log read. 404 without a log."""
    return _export(_files(settings), store, settings, collection, since, progress)


def _files(settings: Settings) -> list[Path]:
    directory = log_dir(settings.data_dir)
    files = log_files(directory)
    if not files:
        raise NotFound(
            f"no search log under {directory}: turn it on with search_log.enabled: true "
            "(RAG_SEARCH_LOG__ENABLED=true), then search, chat and give feedback",
            param="search_log",
            code="search_log_not_found",
        )
    return files


def _export(
    files: list[Path],
    store: VectorStore | None,
    settings: Settings,
    collection: str | None,
    since: datetime | None,
    progress: Callable[[int], None] | None,
) -> PairsExport:
    result = PairsExport()
    bad = [0]
    events = _read(read_records(files, bad, progress), collection, since, result)
    result.bad_lines = bad[0]
    plans = [(event, event.plan()) for event in events]
    wanted: dict[str, set[tuple[str, str]]] = {}
    for event, plan in plans:
        for positive, negatives in plan:
            for h in (positive, *negatives):
                wanted.setdefault(event.collection, set()).add((h.doc_id, h.chunk_id))
    if not wanted:  # nothing to look up: no store needed
        return result
    owned = store is None
    if store is None:
        from rag_appliance.store.registry import build_store

        store = build_store(settings)
    try:
        # Event collections may be aliases (blue/green re-indexing): resolved as searches are.
        reader = aliased(store)
        texts = {name: _texts(reader, name, refs) for name, refs in wanted.items()}
    finally:
        if owned:
            store.close()
    result.missing_chunks = sum(
        1 for name, refs in wanted.items() for _, cid in refs if cid not in texts[name]
    )
    result.pairs = _assemble(plans, texts)
    return result


def _read(
    records: Iterable[dict[str, Any]],
    collection: str | None,
    since: datetime | None,
    result: PairsExport,
) -> list[_Event]:
    events: dict[str, _Event] = {}
    feedback: list[dict[str, Any]] = []
    for record in records:
        kind = record["type"]
        if kind in EVENT_TYPES:
            event = _event(record, collection, since)
            if event is not None:
                events[str(record.get("id"))] = event
        elif kind == "feedback":
            feedback.append(record)
    # Applied after the whole read: feedback may be written just before its queued event.
    for record in feedback:
        target = events.get(str(record.get("event_id")))
        if target is not None:
            target.apply(record)
            result.feedback += 1
    result.events = len(events)
    return list(events.values())


def _event(record: dict[str, Any], collection: str | None, since: datetime | None) -> _Event | None:
    name, query = record.get("collection"), record.get("query")
    if not isinstance(name, str) or not isinstance(query, str) or not query.strip():
        return None
    if collection is not None and name != collection:
        return None
    if since is not None and not _after(record.get("time"), since):
        return None
    try:  # the log is ours, but a hand-edited line must not stop the export
        hits = [
            _Hit(str(h["chunk_id"]), str(h["doc_id"]), int(h.get("rank", n)))
            for n, h in enumerate(record.get("hits") or (), 1)
            if isinstance(h, dict) and "chunk_id" in h and "doc_id" in h
        ]
        cited = {str(c) for c in (record.get("cited") or {}).get("chunk_ids") or ()}
    except (TypeError, ValueError, AttributeError):
        return None
    return _Event(name, query, hits, cited)


def _after(value: Any, since: datetime) -> bool:
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return False
    return (when if when.tzinfo else when.replace(tzinfo=UTC)) >= since


def _texts(store: VectorStore, name: str, refs: set[tuple[str, str]]) -> dict[str, str]:
    """chunk id -> its committed text, for the chunks of `refs` still in the store."""
    ids = {cid for _, cid in refs}
    docs = sorted({doc for doc, _ in refs})
    found: dict[str, str] = {}
    for start in range(0, len(docs), _DOCS_PER_SCROLL):
        flt = Filter(
            must=(Match("doc_id", tuple(docs[start : start + _DOCS_PER_SCROLL])), COMMITTED)
        )
        cursor: str | None = None
        while True:
            try:
                page, cursor = store.scroll(name, flt, _PAGE, cursor)
            except AppError:  # the collection is gone: its chunks count as missing
                return found
            for record in page:
                text = record.payload.get("text")
                if record.id in ids and isinstance(text, str) and text.strip():
                    found[record.id] = text
            if cursor is None or not page:
                break
    return found


def _assemble(
    plans: list[tuple[_Event, list[tuple[_Hit, list[_Hit]]]]], texts: dict[str, dict[str, str]]
) -> list[dict[str, str]]:
    pairs: list[dict[str, str]] = []
    seen: set[tuple[str, str, str | None]] = set()
    for event, plan in plans:
        chunk = texts.get(event.collection, {})
        for positive, negatives in plan:
            text = chunk.get(positive.chunk_id)
            if text is None:
                continue
            others: list[str | None] = [
                chunk[n.chunk_id] for n in negatives if chunk.get(n.chunk_id, text) != text
            ]
            for negative in others or [None]:
                key = (event.query, text, negative)
                if key in seen:
                    continue
                seen.add(key)
                pair = {"query": event.query, "positive": text}
                if negative is not None:
                    pair["negative"] = negative
                pairs.append(pair)
    return pairs


def write_pairs(path: Path, pairs: Iterable[dict[str, str]]) -> None:
    """Write JSONL atomically: a temporary file beside `path`, then renamed over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            for pair in pairs:
                handle.write(orjson.dumps(pair) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


async def export_command(
    settings: Settings, output: Path, collection: str | None, since: str | None
) -> int:
    """`rag-appliance pairs export`: exit 1 (nothing written) when there are no pairs."""
    from tqdm import tqdm

    when = parse_since(since)
    if not output.parent.is_dir():
        raise InvalidRequest(f"--output: folder {output.parent} does not exist", param="output")
    files = _files(settings)
    total = sum(p.stat().st_size for p in files if p.exists())
    with tqdm(total=total, unit="B", unit_scale=True, desc="reading the search log") as bar:
        result = await asyncio.to_thread(
            _export, files, None, settings, collection, when, bar.update
        )
    if not result.pairs:
        print(f"rag-appliance: no pairs: {result.summary()}; nothing written", file=sys.stderr)
        return 1
    await asyncio.to_thread(write_pairs, output, result.pairs)
    print(f"wrote {output}: {result.summary()}")
    return 0
