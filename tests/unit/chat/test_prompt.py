"""Context packing: numbered passages within a token budget, and the system message."""

from __future__ import annotations

from rag_appliance.chat.prompt import INSTRUCTIONS, NO_CONTEXT, NO_ROOM, pack, with_context
from rag_appliance.generation.base import Message
from rag_appliance.retrieval.retriever import SearchHit


def hit(doc: str, score: float, words: int) -> SearchHit:
    return SearchHit(doc, 0, " ".join([doc] * words), score, {}, None)


def count(text: str) -> int:
    return len(text.split())


def test_best_first_numbered_and_whole() -> None:
    packed = pack([hit("b", 0.5, 3), hit("a", 0.9, 3)], 1000, count)
    assert [h.doc_id for h in packed.hits] == ["a", "b"]
    assert packed.system_text.startswith(INSTRUCTIONS)
    assert "[1] (document: a)" in packed.system_text and "[2] (document: b)" in packed.system_text


def test_stops_before_the_passage_that_would_not_fit() -> None:
    header = count(f"{INSTRUCTIONS}\n\nContext:\n")
    hits = [hit("a", 0.9, 10), hit("b", 0.8, 50), hit("c", 0.7, 1)]
    packed = pack(hits, header + 20, count)
    # "b" does not fit; packing stops there rather than skipping to smaller, worse passages.
    assert [h.doc_id for h in packed.hits] == ["a"]
    assert "(document: b)" not in packed.system_text


def test_nothing_fits_or_nothing_found_says_so() -> None:
    assert pack([], 1000, count).system_text == NO_CONTEXT
    tiny = pack([hit("a", 0.9, 100)], 5, count)
    # found but too long: said as such, not "nothing was found"
    assert tiny.hits == [] and tiny.system_text == NO_ROOM


def test_context_joins_the_system_message() -> None:
    msgs = [Message("system", "Be brief."), Message("user", "Q?")]
    out = with_context(msgs, "CTX")
    assert out[0] == Message("system", "Be brief.\n\nCTX") and out[1:] == msgs[1:]
    assert with_context([Message("user", "Q?")], "CTX")[0] == Message("system", "CTX")
