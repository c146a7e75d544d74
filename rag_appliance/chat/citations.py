"""Citations that do not depend on the model's obedience: markers checked, answers attributed.

A small model cites wrongly ("[7]" with three passages) or not at all. After generation the
markers it wrote are validated against the passages it was given; where it cited nothing
valid, each sentence is scored against each passage (embedding cosine plus content-word
overlap) and cited where the support clears a threshold tuned on tests/data/attribution/
(`bench/attribution.py` measures it). The result carries OpenAI's `url_citation` annotations.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rag_appliance.embedding.service import EmbeddingService, EmbedParams
from rag_appliance.errors import AppError

log = logging.getLogger(__name__)

# Tuned on tests/data/attribution/dev.json (bench/attribution.py); see docs/chat.md.
THRESHOLD = 0.55
# Weight of the embedding cosine in the support score; the rest is content-word overlap.
COSINE_WEIGHT = 0.7
# Support kept when a sentence has a number its passage lacks ("built in 1952").
NOVEL_NUMBER = 0.5
# Sentences with fewer content words say too little to attribute ("Yes.", "In short:").
MIN_WORDS = 2

# `[1]`, `[1, 2]`; each of `[1][2]` separately. Up to three digits: `[2024]` is not a marker.
MARKER = re.compile(r"(\s*)\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_MARKERS_AT_END = re.compile(r"(?:\s*\[\d{1,3}(?:\s*,\s*\d{1,3})*\])+\s*$")
# Where a sentence may end: punctuation, closing quotes or brackets, the markers citing it.
_END = re.compile(
    r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?:\s*\[\d{1,3}(?:\s*,\s*\d{1,3})*\])*(?=\s|$)|\n"
)
_ABBREVIATIONS = frozenset(
    re.findall(
        r"\S+",
        "e.g i.e etc vs cf al approx fig no nos mr mrs ms dr prof st jr sr inc ltd co corp "
        "dept est jan feb mar apr jun jul aug sep sept oct nov dec",
    )
)
# What may still become a marker: "[", "[1", "[1 ,", "[1, 2" (a superset is harmless).
_PARTIAL = re.compile(r"\[[\d\s,]{0,24}")
_FINAL_PUNCT = re.compile(r"[.!?\u2026:;]+[\"'\u201d\u2019)\]]*$")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
STOPWORDS = frozenset(
    re.findall(
        r"\S+",
        """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few
    for from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not now of off on once only or
    other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your yours
    yourself yourselves according passage passages document documents context text says said
    mentioned mentions states stated provided information answer question""",
    )
)

Embed = Callable[[list[str]], Awaitable[np.ndarray]]
"""Texts -> unit vectors, one row per text (the served embedding model, or a test double)."""


@dataclass(frozen=True)
class CitedSource:
    """A passage the model was given, numbered as in the prompt, and where it can be read."""

    number: int
    text: str
    title: str
    url: str


@dataclass(frozen=True)
class Attributed:
    """The final answer: its content, OpenAI url_citation annotations, the sources cited."""

    text: str
    annotations: list[dict[str, Any]] = field(default_factory=list)
    cited: list[int] = field(default_factory=list)


def validate_markers(text: str, sources: int) -> str:
    """The text with markers naming no passage (n < 1 or n > sources) removed."""

    def fix(m: re.Match[str]) -> str:
        numbers = [n for n in _numbers(m.group(2)) if 1 <= n <= sources]
        if not numbers:
            return ""  # with the whitespace before it: "blue [7]." -> "blue."
        return f"{m.group(1)}[{', '.join(str(n) for n in numbers)}]"

    return MARKER.sub(fix, text)


def markers(text: str) -> list[tuple[int, int]]:
    """(number, offset) of every cited number in the text, in order."""
    return [(n, m.start(2) - 1) for m in MARKER.finditer(text) for n in _numbers(m.group(2))]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence; markers right after a sentence's full stop belong to it."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _END.finditer(text):
        if m.group() == "\n":
            end = m.start()
        elif _abbreviation(text, m.start()):
            continue
        else:
            end = m.end()
        _add_span(text, start, end, spans)
        start = end
    _add_span(text, start, len(text), spans)
    return spans


def content_words(text: str) -> set[str]:
    """Lowercased words that carry meaning: no stopwords, markers or one-letter words."""
    bare = MARKER.sub(" ", text)
    words = (w.lower() for w in _WORD.findall(bare))
    return {w for w in words if len(w) > 1 or w.isdigit()} - STOPWORDS


async def support_parts(
    embed: Embed, sentences: Sequence[str], passages: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(cosine, content-word overlap) of each sentence (rows) with each passage (columns)."""
    shape = (len(sentences), len(passages))
    if not sentences or not passages:
        return np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=np.float32)
    # A short sentence is closer to the passage sentence it restates than to the whole
    # passage: the cosine is the best over the passage and each of its sentences.
    pieces: list[str] = []
    owner: list[int] = []
    for j, passage in enumerate(passages):
        parts = [passage[a:b] for a, b in sentence_spans(passage)]
        for piece in [passage, *parts] if len(parts) > 1 else [passage]:
            pieces.append(piece)
            owner.append(j)
    vectors = await embed([*sentences, *pieces])
    each = vectors[: len(sentences)] @ vectors[len(sentences) :].T
    cosine = np.zeros(shape, dtype=np.float32)
    for k, j in enumerate(owner):
        cosine[:, j] = np.maximum(cosine[:, j], each[:, k])
    words = [content_words(p) for p in passages]
    overlap = np.array(
        [[_overlap(content_words(s), w) for w in words] for s in sentences], dtype=np.float32
    )
    # A number the passage does not have is the commonest made-up fact: it halves the support
    # of a sentence none of whose numbers the passage has ("built in 1952"); a sentence that
    # has the passage's number and embroiders around it ("lit on 12 January 1887") keeps it.
    for i, sentence in enumerate(sentences):
        numbers = {w for w in content_words(sentence) if w.isdigit()}
        for j, passage_words in enumerate(words):
            if numbers and not numbers & passage_words:
                cosine[i, j] *= NOVEL_NUMBER
                overlap[i, j] *= NOVEL_NUMBER
    return np.clip(cosine, 0.0, 1.0), overlap


class Attributor:
    """Scores sentences against passages and cites where the support clears the threshold."""

    def __init__(
        self, embed: Embed, threshold: float = THRESHOLD, cosine_weight: float = COSINE_WEIGHT
    ) -> None:
        self.embed = embed
        self.threshold = threshold
        self.cosine_weight = cosine_weight

    async def scores(self, sentences: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """Support of each sentence (rows) by each passage (columns), 0..1."""
        cosine, overlap = await support_parts(self.embed, sentences, passages)
        w = self.cosine_weight
        return np.asarray(w * cosine + (1 - w) * overlap, dtype=np.float32)

    async def attribute(
        self, text: str, sources: Sequence[CitedSource], *, append: bool = False
    ) -> Attributed:
        """Markers validated; with none valid, supported sentences cited (inline or at the end).

        `append=True` is for a streamed answer, whose text is already sent: the added markers
        then follow the whole answer and the annotations still point at the sentences.
        """
        text = validate_markers(text, len(sources))
        spans = sentence_spans(text)
        by_number = {s.number: s for s in sources}
        found = markers(text)
        if found:
            pairs = [(n, _containing(spans, offset, len(text))) for n, offset in found]
            return _result(text, pairs, by_number)
        candidates = [
            (i, text[a:b])
            for i, (a, b) in enumerate(spans)
            if len(content_words(text[a:b])) >= MIN_WORDS
        ]
        if not candidates or not sources:
            return Attributed(text)
        try:
            support = await self.scores([s for _, s in candidates], [s.text for s in sources])
        except AppError as exc:  # attribution must never fail the answer itself
            log.warning("attribution skipped: the embedder refused (%s)", exc.message)
            return Attributed(text)
        best: dict[int, int] = {}  # sentence index -> source number
        for row, (i, _) in enumerate(candidates):
            column = int(np.argmax(support[row]))
            if support[row, column] >= self.threshold:
                best[i] = sources[column].number
        if not best:
            return Attributed(text)
        if append:
            cited = list(dict.fromkeys(best[i] for i in sorted(best)))
            pairs = [(best[i], spans[i]) for i in sorted(best)]
            suffix = " " + "".join(f"[{n}]" for n in cited)
            return _result(text + suffix, pairs, by_number)
        return _inline(text, spans, best, by_number)


class MarkerFilter:
    """A stream's text with invalid markers removed before they are sent.

    Holds back a tail that may still become a marker (`[`, `[1`, `[1, `) and the whitespace
    before it; everything released equals `validate_markers` of the whole text.
    """

    def __init__(self, sources: int) -> None:
        self.sources = sources
        self._held = ""

    def feed(self, text: str) -> str:
        """The text that can be sent now."""
        held = self._held + text
        cut = _hold_from(held)
        self._held = held[cut:]
        return validate_markers(held[:cut], self.sources)

    def flush(self) -> str:
        """The rest, once the stream has ended."""
        held, self._held = self._held, ""
        return validate_markers(held, self.sources)


def embedder(service: EmbeddingService) -> Embed:
    """The served embedding model as an `Embed` (both sides embedded as documents)."""

    async def embed(texts: list[str]) -> np.ndarray:
        result = await service.embed(EmbedParams(inputs=texts, input_type="document"))
        return result.vectors

    return embed


def annotation(source: CitedSource, start: int, end: int) -> dict[str, Any]:
    """One OpenAI url_citation annotation."""
    return {
        "type": "url_citation",
        "url_citation": {
            "url": source.url,
            "title": source.title,
            "start_index": start,
            "end_index": end,
        },
    }


def _inline(
    text: str,
    spans: list[tuple[int, int]],
    best: dict[int, int],
    by_number: dict[int, CitedSource],
) -> Attributed:
    """Each supported sentence gets ` [n]` before its final punctuation."""
    out: list[str] = []
    pairs: list[tuple[int, tuple[int, int]]] = []
    cursor = shift = 0
    for i, (a, b) in enumerate(spans):
        if i not in best:
            continue
        sentence = text[a:b]
        punct = _FINAL_PUNCT.search(sentence)
        cut = a + (punct.start() if punct else len(sentence))
        marker = f" [{best[i]}]"
        out += [text[cursor:cut], marker]
        cursor = cut
        pairs.append((best[i], (a + shift, b + shift + len(marker))))
        shift += len(marker)
    out.append(text[cursor:])
    return _result("".join(out), pairs, by_number)


def _result(
    text: str, pairs: Sequence[tuple[int, tuple[int, int]]], by_number: dict[int, CitedSource]
) -> Attributed:
    annotations: list[dict[str, Any]] = []
    seen: set[tuple[int, int, int]] = set()
    for number, (a, b) in pairs:
        if (number, a, b) in seen or number not in by_number:
            continue
        seen.add((number, a, b))
        annotations.append(annotation(by_number[number], a, b))
    cited = list(dict.fromkeys(n for n, _ in pairs if n in by_number))
    return Attributed(text, annotations, cited)


def _containing(spans: list[tuple[int, int]], offset: int, length: int) -> tuple[int, int]:
    """The sentence a marker at `offset` belongs to (one between sentences: the one before)."""
    for a, b in spans:
        if a <= offset < b:
            return a, b
    previous = [s for s in spans if s[1] <= offset]
    return previous[-1] if previous else (0, length)


def _hold_from(text: str) -> int:
    """Where the tail that may still grow into a marker (and the space before it) begins."""
    cut = len(text)
    bracket = text.rfind("[")
    if bracket != -1 and _PARTIAL.fullmatch(text, bracket):
        cut = bracket
    while cut > 0 and text[cut - 1].isspace():
        cut -= 1
    return cut


def _numbers(group: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", group)]


def _overlap(sentence: set[str], passage: set[str]) -> float:
    return len(sentence & passage) / len(sentence) if sentence else 0.0


def _abbreviation(text: str, dot: int) -> bool:
    """Whether the punctuation at `dot` ends an abbreviation, an initial or a list number."""
    if text[dot] != ".":
        return False
    before = text[:dot]
    word = re.search(r"(\S+)$", before)
    if word is None:
        return False
    token = word.group(1).lower().lstrip("(\"'")
    if token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha()):
        return True
    line_start = before.rfind("\n") + 1
    # "1. First step": a list number at the start of a line ends no sentence.
    return token.isdigit() and len(token) <= 2 and not before[line_start : word.start()].strip()


def _add_span(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    piece = text[start:end]
    stripped = piece.strip()
    if not stripped:
        return
    a = start + (len(piece) - len(piece.lstrip()))
    if _MARKERS_AT_END.fullmatch(stripped) and spans:
        # A line holding only markers ("[1][2]" after a list) cites the sentence before it.
        spans[-1] = (spans[-1][0], a + len(stripped))
        return
    spans.append((a, a + len(stripped)))
