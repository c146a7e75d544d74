"""The loop guard: repeated phrases and cycles are cut before they are sent; the stream closes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from rag_appliance.chat.citations import MarkerFilter
from rag_appliance.chat.loopguard import GuardedDeltas, LoopGuard, ngram_counts
from rag_appliance.generation.base import Delta


def guarded(text: str, size: int = 3) -> tuple[str, bool]:
    guard = LoopGuard()
    out = ""
    for i in range(0, len(text), size):
        out += guard.feed(text[i : i + size])
        if guard.looped:
            break
    return out + guard.flush(), guard.looped


def worst(text: str) -> int:
    return max(ngram_counts(text).values(), default=0)


@pytest.mark.parametrize(
    "text",
    [
        "The code is heron-4471. " * 8,
        "I like it. " * 12,
        "yes " * 30,
        "The answer is yes, and the answer is yes, so the answer is yes, ok the answer is yes.",
        "A garden. " + "The lamp flashes white twice every ten seconds, and " * 5,
    ],
)
def test_loops_are_cut_before_a_fourth_repeat(text: str) -> None:
    out, looped = guarded(text)
    assert looped and worst(out) <= 3 and len(out) < len(text)
    assert text.startswith(out)


def test_characters_without_spaces_loop_too() -> None:
    out, looped = guarded("Look: " + "-" * 200)
    assert looped and len(out) < 80


def test_ordinary_text_passes_whole() -> None:
    text = (
        "The Osk Valley Observatory sits at 2,140 metres. Its access code is heron-4471, and "
        "visitors may enter between 19:00 and 23:00. The main telescope is named Galla."
    )
    for size in (1, 4, 50):
        assert guarded(text, size) == (text, False)


def test_the_guard_holds_back_only_the_last_words() -> None:
    guard = LoopGuard()
    assert guard.feed("one two three four five ") == "one two "
    assert guard.flush() == "three four five "


def test_a_disabled_guard_passes_everything() -> None:
    guard = LoopGuard(enabled=False)
    assert guard.feed("x " * 50) == "x " * 50 and not guard.looped


class Engine:
    """Deltas word by word; records whether it was closed early."""

    def __init__(self, text: str) -> None:
        self.words = text.split()
        self.closed = False
        self.sent = 0

    def stream(self) -> AsyncIterator[Delta]:
        async def gen() -> AsyncIterator[Delta]:
            try:
                for i, w in enumerate(self.words):
                    self.sent = i + 1
                    last = i == len(self.words) - 1
                    yield Delta(("" if i == 0 else " ") + w, "length" if last else None, i + 1)
            except GeneratorExit:
                self.closed = True
                raise

        return gen()


async def drain(deltas: GuardedDeltas) -> list[Delta]:
    return [d async for d in deltas]


def test_guarded_stream_stops_closes_and_says_why() -> None:
    engine = Engine("Tuesday is soup day." + " The soup is lentil." * 40)
    deltas = GuardedDeltas(engine.stream())
    out = asyncio.run(drain(deltas))
    text = "".join(d.text for d in out)
    assert deltas.stop_reason == "repetition" and out[-1].finish_reason == "stop"
    assert engine.closed and engine.sent < len(engine.words)
    assert worst(text) <= 3 and text == deltas.text


def test_guarded_stream_without_a_loop_keeps_the_engines_finish() -> None:
    words = "The soup on Tuesday is lentil [3] as the menu says [1]."
    deltas = GuardedDeltas(Engine(words).stream(), MarkerFilter(2))
    out = asyncio.run(drain(deltas))
    assert "".join(d.text for d in out) == "The soup on Tuesday is lentil as the menu says [1]."
    assert out[-1].finish_reason == "length" and deltas.stop_reason is None


def test_a_loop_in_the_last_words_is_cut_at_the_finish() -> None:
    words = "a b c d x a b c d y a b c d z a b c d"  # the 4th "a b c d" ends it
    deltas = GuardedDeltas(Engine(words).stream())
    out = asyncio.run(drain(deltas))
    text = "".join(d.text for d in out)
    assert text == "a b c d x a b c d y a b c d z " and out[-1].finish_reason == "stop"
    assert deltas.stop_reason == "repetition"
