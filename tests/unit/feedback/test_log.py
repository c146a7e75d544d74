"""The search log: record shapes, size rotation, durable feedback writes, event lookups."""

from __future__ import annotations

from pathlib import Path

import orjson

from rag_appliance.auth import acting_as
from rag_appliance.auth.keys import Principal
from rag_appliance.feedback.log import SearchLog, log_files, read_records
from rag_appliance.ingest.chunking import stable_chunk_id
from rag_appliance.retrieval.retriever import SearchHit
from rag_appliance.settings import SearchLogSettings

HITS = [
    SearchHit("a.txt", 0, "alpha text", 0.9, {}, None),
    SearchHit("b.txt", 2, "beta text", 0.7, {}, None),
    SearchHit("a.txt", 1, "alpha two", 0.5, {}, None),
]


def started(directory: Path, **settings: int) -> SearchLog:
    log = SearchLog(directory, SearchLogSettings(enabled=True, **settings))
    log.start()
    return log


def lines(directory: Path) -> list[dict[str, object]]:
    return list(read_records(log_files(directory)))


def test_a_search_record_has_ids_ranks_and_the_key_name_never_the_key(tmp_path: Path) -> None:
    log = started(tmp_path)
    with acting_as(Principal("alice", "read-only", ("kb",))):
        log.record_search("search-1", "kb", "what is alpha?", HITS, mode="hybrid", model="m")
    log.stop()
    (record,) = lines(tmp_path)
    assert record["type"] == "search" and record["id"] == "search-1"
    assert record["collection"] == "kb" and record["query"] == "what is alpha?"
    assert record["mode"] == "hybrid" and record["model"] == "m" and record["key"] == "alice"
    assert str(record["time"]).endswith("Z")
    assert record["hits"] == [
        {"rank": 1, "chunk_id": stable_chunk_id("a.txt", 0), "doc_id": "a.txt",
         "chunk_index": 0, "score": 0.9},
        {"rank": 2, "chunk_id": stable_chunk_id("b.txt", 2), "doc_id": "b.txt",
         "chunk_index": 2, "score": 0.7},
        {"rank": 3, "chunk_id": stable_chunk_id("a.txt", 1), "doc_id": "a.txt",
         "chunk_index": 1, "score": 0.5},
    ]  # fmt: skip


def test_a_chat_record_names_what_the_answer_cited(tmp_path: Path) -> None:
    log = started(tmp_path)
    # [3] and [1] cited, [9] names no passage: dropped.
    log.record_chat("chatcmpl-1", "kb", "alpha? and beta", HITS, [3, 1, 9], found=5)
    log.stop()
    (record,) = lines(tmp_path)
    assert record["type"] == "chat" and record["key"] is None and record["found"] == 5
    assert record["cited"] == {
        "chunk_ids": [stable_chunk_id("a.txt", 0), stable_chunk_id("a.txt", 1)],
        "doc_ids": ["a.txt"],
    }


def test_the_log_rotates_by_size_and_keeps_its_backups(tmp_path: Path) -> None:
    log = started(tmp_path, max_bytes=4096, backups=2)
    for n in range(200):  # ~500 bytes each: ~25 files' worth
        log.record_search(f"search-{n}", "kb", "q" * 50, HITS)
    log.stop()
    files = log_files(tmp_path)
    assert [p.name for p in files] == ["search.jsonl.2", "search.jsonl.1", "search.jsonl"]
    assert all(p.stat().st_size <= 4096 for p in files)
    ids = [r["id"] for r in read_records(files)]
    # The newest records survive, in order, each whole (every line parses).
    assert ids == [f"search-{n}" for n in range(200 - len(ids), 200)] and len(ids) > 8
    for path in files:
        for line in path.read_bytes().splitlines():
            orjson.loads(line)


async def test_feedback_is_in_the_file_when_write_returns(tmp_path: Path) -> None:
    log = started(tmp_path)
    try:
        await log.write({"type": "feedback", "id": "feedback-1", "event_id": "search-1"})
        assert orjson.loads((tmp_path / "search.jsonl").read_bytes())["id"] == "feedback-1"
    finally:
        log.stop()


async def test_events_are_found_in_memory_then_in_the_files(tmp_path: Path) -> None:
    log = started(tmp_path, index_size=2)
    for n in range(3):
        log.record_search(f"search-{n}", "kb", "query", HITS)
    assert not log.known("search-0") and log.known("search-2")  # the memory index is bounded
    log.stop()
    # Another process (a restart) finds the old event in the files.
    again = started(tmp_path)
    try:
        found = await again.find("search-0")
        assert found is not None and found.collection == "kb"
        assert found.chunk_ids == tuple(stable_chunk_id(h.doc_id, h.chunk_index) for h in HITS)
        assert found.doc_ids == ("a.txt", "b.txt")
        assert await again.find("search-404") is None
        assert await again.find("search-") is None  # a prefix of a real id is not it
    finally:
        again.stop()


def test_cut_short_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    log = started(tmp_path)
    log.record_search("search-1", "kb", "query", HITS)
    log.stop()
    with (tmp_path / "search.jsonl").open("ab") as f:
        f.write(b'{"type": "search", "id": "search-2", "que')  # a crash mid-line
    bad = [0]
    assert [r["id"] for r in read_records(log_files(tmp_path), bad)] == ["search-1"]
    assert bad == [1]
