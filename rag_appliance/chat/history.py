"""A conversation as retrieval and the prompt see it: the standalone query, and turns that fit.

Follow-ups ("What else does it say about it?") name nothing to search for, so the search text
is the newest user message with the previous user messages between two copies of it: the
earlier turns supply the entity, the repeated newest one keeps a change of topic on top.
Measured against condensing by the generator and other cheap variants in docs/chat.md
(`bench/followups.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rag_appliance.chat.citations import MARKER
from rag_appliance.generation.base import Message


def retrieval_query(messages: Sequence[Message], turns: int) -> str:
    """The search text for the newest user message, given up to `turns` earlier user turns."""
    users = [m.content.strip() for m in messages if m.role == "user" and m.content.strip()]
    if not users:
        return ""
    newest = users[-1]
    earlier = users[-1 - turns : -1] if turns > 0 else []
    if not earlier:
        return newest
    return "\n".join([newest, *earlier, newest])


@dataclass(frozen=True)
class Fitted:
    """The messages sent, and how many earlier messages were left out to make room."""

    messages: list[Message]
    dropped: int


def fit_turns(
    messages: Sequence[Message],
    render: Callable[[list[Message]], int],
    limit: int,
) -> Fitted:
    """Keep the system messages and the newest user turn, then earlier turns newest first.

    `render(messages)` is the prompt's length in tokens; earlier turns (a user message and the
    replies after it) are kept whole, newest first, while the prompt stays within `limit`; the
    first one that does not fit ends the search, so the kept history is contiguous.
    """
    system = [m for m in messages if m.role == "system"]
    rest = [m for m in messages if m.role != "system"]
    last_user = max((i for i, m in enumerate(rest) if m.role == "user"), default=len(rest))
    core, earlier = rest[last_user:], rest[:last_user]
    kept: list[Message] = []
    for turn in reversed(_turns(earlier)):
        if render([*system, *turn, *kept, *core]) > limit:
            break
        kept = [*turn, *kept]
    return Fitted([*system, *kept, *core], len(earlier) - len(kept))


def newest_turn(messages: Sequence[Message]) -> list[Message]:
    """The system messages and the newest user turn: what every prompt keeps."""
    return fit_turns(messages, lambda _: 1, 0).messages


def without_markers(messages: Sequence[Message]) -> list[Message]:
    """Earlier answers without their `[n]` markers: they number an earlier turn's passages, so
    left in they point the model at the wrong ones now (and it copies them)."""
    return [
        Message(m.role, MARKER.sub("", m.content)) if m.role == "assistant" else m for m in messages
    ]


def _turns(messages: list[Message]) -> list[list[Message]]:
    """Messages split into turns, each starting at a user message (a leading reply stands alone)."""
    turns: list[list[Message]] = []
    for message in messages:
        if message.role == "user" or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    return turns
