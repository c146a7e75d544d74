"""Context packing: retrieved chunks -> numbered sources within a token budget, and the prompt."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rag_appliance.generation.base import Message
from rag_appliance.retrieval.retriever import SearchHit

INSTRUCTIONS = (
    "Answer the user's question using only the numbered context passages below. "
    "Cite the passages you use with their numbers in square brackets, like [1]. "
    "If the passages do not contain the answer, say that the documents do not answer it."
)
NO_CONTEXT = (
    "A search of the document collection found no passages relevant to the user's question. "
    "Tell the user that the documents do not contain an answer; do not make one up."
)
NO_ROOM = (
    "Passages relevant to the user's question were found but did not fit in the context "
    "window. Tell the user to start a new conversation or ask a shorter question; do not make "
    "an answer up."
)


@dataclass(frozen=True)
class PackedContext:
    """The passages that fit, numbered from 1, and the system text that presents them."""

    hits: list[SearchHit]
    system_text: str


def pack(hits: Sequence[SearchHit], budget: int, count: Callable[[str], int]) -> PackedContext:
    """Most relevant first, each passage whole, until the next one would exceed the budget."""
    if not hits:
        return PackedContext([], NO_CONTEXT)
    header = f"{INSTRUCTIONS}\n\nContext:\n"
    used = count(header)
    kept: list[SearchHit] = []
    blocks: list[str] = []
    for hit in sorted(hits, key=lambda h: h.score, reverse=True):
        block = passage(len(kept) + 1, hit)
        cost = count(block) + 1
        if used + cost > budget:
            break
        kept.append(hit)
        blocks.append(block)
        used += cost
    if not kept:
        return PackedContext([], NO_ROOM)
    return PackedContext(kept, header + "\n".join(blocks))


def passage(number: int, hit: SearchHit) -> str:
    """One numbered passage with its document id."""
    return f"[{number}] (document: {hit.doc_id})\n{hit.text.strip()}\n"


def with_context(messages: Sequence[Message], system_text: str) -> list[Message]:
    """The conversation with the retrieval instructions joined to (or as) the system message."""
    out = list(messages)
    if out and out[0].role == "system":
        return [Message("system", f"{out[0].content}\n\n{system_text}"), *out[1:]]
    return [Message("system", system_text), *out]
