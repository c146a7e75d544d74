"""ChatService's prompt budget with priorities: passages before old turns, and true notices."""

from __future__ import annotations

import asyncio
from typing import Any

from rag_appliance.chat.params import ChatParams, RetrievalOptions
from rag_appliance.chat.service import ChatService, RetrievalReport
from rag_appliance.generation.base import Message
from rag_appliance.retrieval.retriever import SearchHit
from rag_appliance.settings import GenerationSettings, RagSettings
from tests.fakes import FakeGenerator


class FakeRetriever:
    """Returns fixed hits and records the query text it was asked for."""

    def __init__(self, hits: list[SearchHit]) -> None:
        self.hits = hits
        self.queries: list[str] = []

    async def search(self, collection: str, query: str, top_k: int, *args: Any, **kw: Any) -> Any:
        self.queries.append(query)
        return self.hits[:top_k]


def hit(doc: str, words: int, score: float = 0.5) -> SearchHit:
    return SearchHit(doc, 0, " ".join([doc] * words), score, {}, None)


def service(hits: list[SearchHit], max_model_len: int = 400) -> tuple[ChatService, FakeRetriever]:
    retriever = FakeRetriever(hits)
    chat = ChatService(
        FakeGenerator(max_model_len=max_model_len),
        retriever,  # type: ignore[arg-type]
        GenerationSettings(max_tokens=50),
        RagSettings(top_k=3),
    )
    return chat, retriever


def long_conversation(turns: int, words: int) -> list[Message]:
    msgs: list[Message] = []
    for n in range(turns):
        msgs += [Message("user", f"q{n} " * words), Message("assistant", f"a{n} " * words)]
    return [*msgs, Message("user", "And what else about it?")]


def prepare(chat: ChatService, messages: list[Message]) -> Any:
    params = ChatParams(messages=messages, rag=RetrievalOptions(collection="c"))
    return asyncio.run(chat.prepare(params))


def test_a_long_history_gives_way_to_the_passages() -> None:
    chat, _ = service([hit("doc1", 30, 0.9), hit("doc2", 30, 0.8)])
    prepared = prepare(chat, long_conversation(8, 20))
    # both passages made it although the whole conversation alone would nearly fill the window
    assert [h.doc_id for h in prepared.sources] == ["doc1", "doc2"]
    report = prepared.retrieval
    assert report.found == 2 and report.used == 2 and report.dropped_turns > 0
    assert "earliest messages" in report.notice()
    # the newest question is in the prompt, the oldest turn is not; the answer keeps its room
    texts = [m.content for m in prepared.messages]
    assert texts[-1] == "And what else about it?"
    assert not any(t.startswith("q0 ") for t in texts)
    assert len(prepared.prompt) + prepared.sampling.max_tokens <= 400
    assert prepared.sampling.max_tokens == 50


def test_the_follow_up_is_searched_with_earlier_user_turns() -> None:
    chat, retriever = service([hit("doc1", 5)])
    msgs = [
        Message("user", "Tell me about the Zephyra bridge"),
        Message("assistant", "It spans a gorge [1]."),
        Message("user", "When did it open?"),
    ]
    prepare(chat, msgs)
    assert retriever.queries == [
        "When did it open?\nTell me about the Zephyra bridge\nWhen did it open?"
    ]


def test_no_passages_found_says_so() -> None:
    chat, _ = service([])
    report = prepare(chat, [Message("user", "anything?")]).retrieval
    assert report == RetrievalReport("c", "anything?", 0, 0, 0)
    assert "No passages in collection 'c' matched" in report.notice()


def test_passages_cut_by_the_budget_are_counted_not_hidden() -> None:
    chat, _ = service([hit("a", 100, 0.9), hit("b", 100, 0.8), hit("c", 100, 0.7)], 400)
    prepared = prepare(chat, [Message("user", "question?")])
    report = prepared.retrieval
    assert report.found == 3 and 0 < report.used < 3
    assert f"{report.used} of the 3 passages found fitted" in report.notice()
    assert report.as_dict()["passages_used"] == report.used


def test_a_short_chat_has_no_notice() -> None:
    chat, _ = service([hit("doc1", 5)])
    assert prepare(chat, [Message("user", "question?")]).retrieval.notice() is None
