"""Pairs export from a recorded log and a fake store: positives from feedback and citations,
explicit and mined negatives, dedup, filters, missing chunks, and the command's file."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from rag_appliance.errors import CollectionNotFound, InvalidRequest, NotFound
from rag_appliance.feedback.log import SearchLog, chunk_id, log_dir
from rag_appliance.feedback.pairs import export_command, export_pairs, parse_since
from rag_appliance.retrieval.retriever import SearchHit
from rag_appliance.settings import SearchLogSettings, Settings
from rag_appliance.store.base import Filter, Match, Record, VectorStore
from tests.conftest import make_settings


def hit(doc: str, index: int = 0) -> SearchHit:
    return SearchHit(doc, index, TEXT[(doc, index)], 0.5, {}, None)


TEXT = {
    ("goats", 0): "Goats graze on the island.",
    ("llamas", 0): "Llamas hum when nervous.",
    ("yaks", 0): "Yaks live high up.",
    ("yaks", 1): "Yak wool is warm.",
    ("gone", 0): "A document deleted since.",
}


class FakeScrollStore:
    """A fake store with one collection 'kb' and just `scroll` (what the export reads)."""

    def __init__(self, texts: dict[tuple[str, int], str]) -> None:
        self.records = [
            Record(chunk_id(SearchHit(d, i, "", 0, {}, None)), {"doc_id": d, "text": t})
            for (d, i), t in texts.items()
        ]
        self.filters: list[Filter | None] = []
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def scroll(
        self, name: str, flt: Filter | None, limit: int, offset: str | None = None
    ) -> tuple[list[Record], str | None]:
        if name != "kb":
            raise CollectionNotFound(f"collection '{name}' does not exist")
        self.filters.append(flt)
        docs = next(c.values for c in (flt.must if flt else ()) if isinstance(c, Match))
        start = int(offset or 0)
        page = [r for r in self.records if r.payload["doc_id"] in docs][start : start + limit]
        more = start + limit < len([r for r in self.records if r.payload["doc_id"] in docs])
        return page, str(start + limit) if more else None


def temporary_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def settings_at(tmp_path: Path) -> Settings:
    return make_settings(search_log={"enabled": True}).model_copy(update={"data_dir": tmp_path})


async def feedback(log: SearchLog, event: str, label: str, **ids: Sequence[str]) -> None:
    await log.write({"type": "feedback", "event_id": event, "label": label, **ids})


@pytest.fixture
async def recorded(tmp_path: Path) -> Settings:
    """A log of searches, answers and feedback (the writer as the server runs it)."""
    settings = settings_at(tmp_path)
    log = SearchLog(log_dir(tmp_path), SearchLogSettings(enabled=True))
    log.start()
    try:
        goats, llamas, yaks, yaks1 = hit("goats"), hit("llamas"), hit("yaks"), hit("yaks", 1)
        # A search: thumbs up on llamas, down on goats -> (q, llamas, goats).
        log.record_search("search-1", "kb", "who hums?", [goats, llamas, yaks])
        await feedback(log, "search-1", "positive", chunk_ids=[chunk_id(llamas)])
        await feedback(log, "search-1", "negative", chunk_ids=[chunk_id(goats)])
        # An answer citing [2]: goats (rank 1, uncited, another document) is its hard negative.
        log.record_chat("chatcmpl-1", "kb", "where do goats graze?", [llamas, goats, yaks], [2])
        # An answer citing [1], judged wrong; the yaks document judged right -> its best chunk.
        log.record_chat("chatcmpl-2", "kb", "is yak wool warm?", [goats, yaks1, yaks], [1])
        await feedback(log, "chatcmpl-2", "negative", chunk_ids=[chunk_id(goats)])
        await feedback(log, "chatcmpl-2", "positive", doc_ids=["yaks"])
        # The same search again with the same judgement: the same pair, once.
        log.record_search("search-2", "kb", "who hums?", [goats, llamas])
        await feedback(log, "search-2", "positive", chunk_ids=[chunk_id(llamas)])
        await feedback(log, "search-2", "negative", chunk_ids=[chunk_id(goats)])
        # Another collection; and a chunk no longer in the store.
        log.record_search("search-3", "other", "elsewhere", [goats])
        await feedback(log, "search-3", "positive", chunk_ids=[chunk_id(goats)])
        log.record_search("search-4", "kb", "deleted?", [hit("gone")])
        await feedback(log, "search-4", "positive", doc_ids=["gone"])
        # Events without feedback or citations give nothing.
        log.record_search("search-5", "kb", "nothing said", [goats])
    finally:
        log.stop()
    return settings


def store() -> VectorStore:
    live = {k: v for k, v in TEXT.items() if k[0] != "gone"}
    return cast(VectorStore, FakeScrollStore(live))


def test_pairs_from_feedback_and_citations(recorded: Settings) -> None:
    result = export_pairs(recorded, store())
    assert result.pairs == [
        {"query": "who hums?", "positive": TEXT["llamas", 0], "negative": TEXT["goats", 0]},
        {"query": "where do goats graze?", "positive": TEXT["goats", 0],
         "negative": TEXT["llamas", 0]},
        {"query": "is yak wool warm?", "positive": TEXT["yaks", 1],
         "negative": TEXT["goats", 0]},
    ]  # fmt: skip
    # Missing: the deleted document, and the chunk of a collection the store no longer has.
    assert result.events == 7 and result.feedback == 8 and result.missing_chunks == 2
    assert result.bad_lines == 0
    assert "3 pairs (3 with a negative) from 7 events" in result.summary()


def test_an_answer_without_a_high_ranked_uncited_passage_has_no_negative(
    tmp_path: Path,
) -> None:
    log = SearchLog(log_dir(tmp_path), SearchLogSettings(enabled=True))
    log.start()
    # The uncited passages are of the cited document, or ranked below the top three.
    log.record_chat(
        "chatcmpl-1", "kb", "yaks?", [hit("yaks"), hit("yaks", 1), hit("goats"), hit("goats"),
                                      hit("llamas")], [1],
    )  # fmt: skip
    log.stop()
    pairs = export_pairs(settings_at(tmp_path), store()).pairs
    assert pairs[0] == {"query": "yaks?", "positive": TEXT["yaks", 0], "negative": TEXT["goats", 0]}
    assert len(pairs) == 1


def test_collection_and_since_filters(recorded: Settings) -> None:
    assert export_pairs(recorded, store(), collection="other").pairs == []  # gone from the store
    assert export_pairs(recorded, store(), collection="other").missing_chunks == 1
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert export_pairs(recorded, store(), since=later).events == 0
    earlier = parse_since("2020-01-01")
    assert export_pairs(recorded, store(), since=earlier).events == 7
    with pytest.raises(InvalidRequest):
        parse_since("last tuesday")


def test_a_data_dir_without_a_log_is_a_clear_404(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"search_log\.enabled"):
        export_pairs(settings_at(tmp_path), store())


async def test_the_command_writes_jsonl_or_nothing(
    recorded: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    opened: list[Any] = []

    def build(_: Settings) -> VectorStore:
        opened.append(store())
        return cast(VectorStore, opened[-1])

    monkeypatch.setattr("rag_appliance.store.registry.build_store", build)
    out = tmp_path / "pairs.jsonl"
    assert await export_command(recorded, out, None, None) == 0
    assert opened and all(s.closed for s in opened)  # the store it opened, it closed
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert lines == export_pairs(recorded, store()).pairs
    assert "wrote" in capsys.readouterr().out
    assert temporary_files(tmp_path) == []
    # No pairs (a collection nobody judged): exit 1 and no file, not an empty one.
    empty = tmp_path / "empty.jsonl"
    assert await export_command(recorded, empty, "nobody", None) == 1
    assert not empty.exists() and "no pairs" in capsys.readouterr().err
    with pytest.raises(InvalidRequest, match="does not exist"):
        await export_command(recorded, tmp_path / "no" / "dir.jsonl", None, None)


def test_hand_edited_lines_do_not_stop_the_export(recorded: Settings) -> None:
    path = log_dir(recorded.data_dir) / "search.jsonl"
    with path.open("ab") as f:
        f.write(b'{"type": "search", "id": "x1", "collection": "kb", "query": "q", "hits": 5}\n')
        f.write(b'{"type": "search", "id": "x2", "collection": "kb", "query": "q", ')
        f.write(b'"hits": [{"chunk_id": "c", "doc_id": "d", "rank": "first"}]}\n')
        f.write(b'{"type": "feedback", "event_id": "x1", "label": "positive"}\n')
        f.write(b"[1, 2]\nnot json\n")
    result = export_pairs(recorded, store())
    assert len(result.pairs) == 3 and result.events == 7 and result.bad_lines == 2
