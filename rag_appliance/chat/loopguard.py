"""Stop a generation that has fallen into a loop, before the repeats reach the client.

A small model at temperature 0 may cycle ("The code is X. The code is X. ..."). The guard
watches the text as it streams and holds back the last few words, so that when a 4-word
sequence would occur a fourth time, or the tail repeats a short cycle, it is cut before the
repeat and the engine's stream is closed (which aborts the request). vLLM 0.32 has its own
`repetition_detection`, but only for contiguous token cycles at the tail; this guard also
catches phrases that come back with other words between them, and works with any engine.
"""

from __future__ import annotations

import collections
import re
from collections.abc import AsyncIterator
from typing import Protocol

from rag_appliance.generation.base import Delta

NGRAM = 4  # a sequence of this many words ...
MAX_COUNT = 3  # ... may occur this many times
MAX_PERIOD = 40  # longest cycle (in words) the tail check looks for
MIN_CYCLE_WORDS = 12  # a tail cycle is a loop once its repeats cover this many words
MIN_REPEATS = 3  # ... and at least this many repeats
# Loops without spaces ("--------", "1111"): a period of up to this many characters ...
MAX_CHAR_PERIOD = 20
MIN_CHAR_RUN = 48  # ... repeated over at least this many characters
LONG_WORD = 64  # a "word" this long is released without waiting for its end
STOP_REASON = "repetition"

_WORD = re.compile(r"\S+(?=\s)")
_EDGE_PUNCT = re.compile(r"^\W+|\W+$")


def normalize(word: str) -> str:
    """A word as the guard compares it: lowercased, without surrounding punctuation."""
    return _EDGE_PUNCT.sub("", word.lower()) or word


def ngram_counts(text: str, n: int = NGRAM) -> collections.Counter[tuple[str, ...]]:
    """How often each n-word sequence occurs in a text (the acceptance measure)."""
    words = [normalize(w) for w in text.split()]
    return collections.Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


class TextFilter(Protocol):
    """A stage after the guard (e.g. the citation marker filter)."""

    def feed(self, text: str) -> str: ...
    def flush(self) -> str: ...


class LoopGuard:
    """Feeds on generated text; releases what is safe and says when the text loops."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled  # off: everything passes at once
        self.text = ""  # everything generated so far
        self.released = 0  # characters of `text` handed out
        self.looped = False
        self._scanned = 0  # where the next complete word may start
        self._words: list[tuple[int, str]] = []  # (start, normalized) of complete words
        self._counts: collections.Counter[tuple[str, ...]] = collections.Counter()
        self._cut = 0  # where the text is cut once it loops

    def feed(self, text: str) -> str:
        """The text that can be sent now ("" once a loop was found)."""
        if self.looped:
            return ""
        self.text += text
        if not self.enabled:
            return self._release(len(self.text))
        for m in _WORD.finditer(self.text, self._scanned):
            self._scanned = m.end()
            if self._add_word(m.start(), m.group()):
                return self._stop()
        if self._char_loop():
            return self._stop()
        # Hold back the last NGRAM-1 words and the word being written: a repeat is cut whole.
        hold = len(self.text)
        if len(self._words) >= NGRAM - 1:
            hold = self._words[-(NGRAM - 1)][0]
        elif self._words:
            hold = self._words[0][0]
        if len(self.text) - self._scanned > LONG_WORD:
            hold = len(self.text)
        return self._release(max(hold, self.released))

    def flush(self) -> str:
        """The rest, once the engine has finished (the last word is complete too)."""
        if self.looped:
            return ""
        tail = self.text[self._scanned :]
        stripped = tail.strip()
        if stripped and self._add_word(self._scanned + tail.index(stripped[0]), stripped):
            return self._stop()
        return self._release(len(self.text))

    def _add_word(self, start: int, word: str) -> bool:
        """Count a complete word; True when the text now loops (the cut is set)."""
        self._words.append((start, normalize(word)))
        words = self._words
        if len(words) >= NGRAM:
            gram = tuple(w for _, w in words[-NGRAM:])
            self._counts[gram] += 1
            if self._counts[gram] > MAX_COUNT:
                self._cut = words[-NGRAM][0]
                return True
        period = _tail_period([w for _, w in words[-MAX_PERIOD * MIN_REPEATS :]])
        if period:
            self._cut = words[-period][0]  # keep the repeats so far, drop the newest
            return True
        return False

    def _char_loop(self) -> bool:
        tail = self.text[-MIN_CHAR_RUN * 2 :]
        for p in range(1, MAX_CHAR_PERIOD + 1):
            run = max(MIN_CHAR_RUN, MIN_REPEATS * p)
            if len(tail) >= run and tail[-run:] == (tail[-p:] * (run // p + 1))[-run:]:
                self._cut = len(self.text) - run + p * 2
                return True
        return False

    def _stop(self) -> str:
        self.looped = True
        return self._release(max(self._cut, self.released))

    def _release(self, upto: int) -> str:
        out = self.text[self.released : upto]
        self.released = upto
        return out


def _tail_period(words: list[str]) -> int:
    """The period of a cycle repeating at the end of the words, 0 when there is none."""
    n = len(words)
    for p in range(1, MAX_PERIOD + 1):
        repeats = max(MIN_REPEATS, -(-MIN_CYCLE_WORDS // p))
        if p * repeats > n:
            break
        if all(words[-i] == words[-i - p] for i in range(1, p * (repeats - 1) + 1)):
            return p
    return 0


class GuardedDeltas:
    """An engine's deltas through the loop guard and an optional filter; closes on a loop.

    `stop_reason` is "repetition" once the guard stopped the generation; the last delta then
    has `finish_reason: "stop"`.
    """

    def __init__(
        self, deltas: AsyncIterator[Delta], after: TextFilter | None = None, guard: bool = True
    ) -> None:
        self._deltas = deltas
        self._after = after
        self.guard = LoopGuard(enabled=guard)
        self.stop_reason: str | None = None
        self.text = ""  # everything released so far
        self._done = False
        self._tokens = 0

    def __aiter__(self) -> GuardedDeltas:
        return self

    async def __anext__(self) -> Delta:
        if self._done:
            raise StopAsyncIteration
        delta = await anext(self._deltas, None) or Delta("", "stop", self._tokens)
        self._tokens = delta.completion_tokens
        text = self.guard.feed(delta.text)
        finish = delta.finish_reason
        if finish is not None and not self.guard.looped:
            text += self.guard.flush()  # the last word may complete a repeat too
        if self.guard.looped:
            self.stop_reason, finish = STOP_REASON, "stop"
            if delta.finish_reason is None:
                await self.aclose()  # aborts the engine's request
        self._done = finish is not None
        if self._after is not None:
            text = self._after.feed(text) + (self._after.flush() if self._done else "")
        self.text += text
        return Delta(text, finish, delta.completion_tokens, delta.logprobs)

    async def aclose(self) -> None:
        """Close the engine's stream (the engine aborts the request)."""
        aclose = getattr(self._deltas, "aclose", None)
        if aclose is not None:
            await aclose()
