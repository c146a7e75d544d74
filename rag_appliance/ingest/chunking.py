"""Token-aware chunking with overlap, and the stable ids and hashes of documents and chunks.

Chunks are cut at token boundaries of the embedding model's own tokenizer, so a chunk of
`max_tokens` tokens fits the model exactly, and each chunk's text is an exact slice of the input.
Cuts fall between words wherever possible, so re-tokenising a chunk's text gives exactly its
`n_tokens` with WordPiece (BERT) and SentencePiece tokenizers; byte-level BPE may count a token
fewer at a chunk's first word, which has lost its leading space.
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
import uuid
from dataclasses import dataclass, field
from typing import Any

# Fixed forever: changing it changes every chunk id, orphaning every stored point.
CHUNK_ID_NAMESPACE = uuid.UUID("9327c8a7-f18a-44b2-b156-4ea3cf18af2d")

# Text longer than this is tokenised and chunked segment by segment, each cut at a paragraph or
# line break: the tokenizer's per-token offsets for a 40 MB text take gigabytes.
SEGMENT_CHARS = 200_000

# A chunk may end this far before its window's end to finish at a sentence or paragraph.
_TAIL_FRACTION = 0.2

# How good a cut between two tokens is; higher is better.
_INSIDE_WORD = 0  # between word pieces: re-tokenising the slices may not give the same pieces
_WORD = 1  # between pre-tokenizer words that touch (before punctuation, between CJK characters)
_SPACE = 2  # at whitespace
_LINE = 3  # at a line break
_SENTENCE = 4  # after a sentence's final punctuation
_PARAGRAPH = 5  # at a blank line

_TERMINALS = frozenset(".!?…")
# CJK full stops (ideographic, full-width ! and ?, half-width) end a sentence with no space
# after them; escaped because they look like ASCII punctuation in an editor.
_WIDE_TERMINALS = frozenset("\u3002\uff01\uff1f\uff61")
# Closing quotes and brackets that may follow a full stop, typographic and CJK ones included.
_CLOSERS = frozenset("\"')]}\u00bb\u201d\u2019\u300d\u300f")


@dataclass(frozen=True)
class ChunkingParams:
    """Chunk size and the overlap between neighbours, both in model tokens."""

    max_tokens: int = 256
    overlap_tokens: int = 32

    def __post_init__(self) -> None:
        """Reject sizes that cannot make progress or make useless chunks."""
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int):
            raise ValueError("max_tokens must be an integer")
        if isinstance(self.overlap_tokens, bool) or not isinstance(self.overlap_tokens, int):
            raise ValueError("overlap_tokens must be an integer")
        if self.max_tokens < 8:
            raise ValueError(f"max_tokens must be at least 8, got {self.max_tokens}")
        if not 0 <= self.overlap_tokens < self.max_tokens:
            raise ValueError(
                f"overlap_tokens must be >= 0 and < max_tokens ({self.max_tokens}), "
                f"got {self.overlap_tokens}"
            )


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk: its position, its text (== source[start_char:end_char]) and token count.

    The text is sliced from the source when asked for, not kept: a large document's chunks
    then cost their offsets, not a second copy of the document (docs/security.md).
    """

    index: int
    source: str = field(repr=False, compare=False)
    start_char: int
    end_char: int
    n_tokens: int

    @property
    def text(self) -> str:
        """The chunk's text: its span of the source."""
        return self.source[self.start_char : self.end_char]


class TooManyChunks(ValueError):
    """The text makes more chunks than the caller allows."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the text makes more than {limit:,} chunks")
        self.limit = limit


def chunk_text(
    text: str, tokenizer: Any, params: ChunkingParams, max_chunks: int | None = None
) -> list[Chunk]:
    """Split text into overlapping chunks of at most params.max_tokens tokens.

    A text over `SEGMENT_CHARS` is tokenised a window at a time, each window ending at
    whitespace; a window's last chunk (cut short by its edge) is redone as the next window's
    first, so the chunks are those of the whole text. More than `max_chunks`: TooManyChunks.
    """
    if not text or text.isspace():
        return []
    chunks: list[Chunk] = []
    pos, n = 0, len(text)
    while True:
        end = n if n - pos <= SEGMENT_CHARS else _window_end(text, pos)
        parts = _chunk_segment(text if end - pos == n else text[pos:end], tokenizer, params)
        resume = end
        if end < n and len(parts) > 1:
            resume = pos + parts.pop().start_char
        for part in parts:
            chunks.append(
                Chunk(
                    len(chunks),
                    text,
                    part.start_char + pos,
                    part.end_char + pos,
                    part.n_tokens,
                )
            )
        if max_chunks is not None and len(chunks) > max_chunks:
            raise TooManyChunks(max_chunks)
        if end >= n:
            return chunks
        pos = resume


def _window_end(text: str, pos: int) -> int:
    """The end of the window from pos: just after the last whitespace in its second half."""
    low, high = pos + SEGMENT_CHARS // 2, pos + SEGMENT_CHARS
    for mark in ("\n", " ", "\t"):
        found = text.rfind(mark, low, high)
        if found >= 0:
            return found + 1
    return high


def _chunk_segment(text: str, tokenizer: Any, params: ChunkingParams) -> list[Chunk]:
    """The chunks of one segment, offsets relative to it."""
    if not text or text.isspace():
        return []
    starts, ends, words = _tokenize(text, tokenizer)
    n = len(starts)
    if n == 0:
        return []
    quality = _cut_quality(text, starts, ends, words)
    size, overlap = params.max_tokens, params.overlap_tokens
    tail = max(1, math.floor(size * _TAIL_FRACTION))

    chunks: list[Chunk] = []
    first, previous_cut = 0, 0
    while True:
        limit = first + size
        if limit >= n:
            cut = n
        else:
            # Each chunk must end past the previous one, or a large overlap could loop forever.
            floor = max(previous_cut, first) + 1
            cut = _best_cut(quality, max(limit - tail, floor), limit, floor)
        chunk = _make_chunk(text, len(chunks), starts, ends, first, cut)
        if chunk.end_char > chunk.start_char:  # whitespace tokens can make an all-blank window
            chunks.append(chunk)
        if cut >= n:
            return chunks
        first = _next_first(quality, cut, overlap, first)
        previous_cut = cut


def stable_chunk_id(doc_id: str, chunk_index: int) -> str:
    """A UUID that depends only on the document id and the chunk's index (Qdrant point id)."""
    if chunk_index < 0:
        raise ValueError(f"chunk_index must be >= 0, got {chunk_index}")
    return str(uuid.uuid5(CHUNK_ID_NAMESPACE, f"{doc_id}\x00{chunk_index}"))


def content_hash(text: str) -> str:
    """SHA-256 of the text's UTF-8 bytes, in hex."""
    # surrogatepass: a lone surrogate from a JSON body must not make hashing fail.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def doc_id_from_content(text: str) -> str:
    """A document id derived from its content: 'sha256:' and 32 hex digits (128 bits)."""
    return "sha256:" + content_hash(text)[:32]


def _tokenize(text: str, tokenizer: Any) -> tuple[list[int], list[int], list[int | None]]:
    """Character spans and pre-tokenizer word ids of the tokens, without special tokens."""
    try:
        encoding = tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
    except NotImplementedError as exc:  # slow (Python) tokenizers have no offsets
        raise TypeError("chunking needs a fast tokenizer (one that returns offsets)") from exc
    offsets = encoding["offset_mapping"]
    try:
        words: list[int | None] = list(encoding.word_ids())
    except (AttributeError, ValueError):
        words = [None] * len(offsets)
    starts: list[int] = []
    ends: list[int] = []
    last_start = last_end = 0
    # Spans are made monotonic so a chunk's [first start, last end) is always a valid slice,
    # even for tokens some tokenizers map to (0, 0) or to overlapping bytes of one character.
    for start, end in offsets:
        last_start = max(start, last_start)
        last_end = max(end, last_end, last_start)
        starts.append(last_start)
        ends.append(last_end)
    return starts, ends, words


def _cut_quality(
    text: str, starts: list[int], ends: list[int], words: list[int | None]
) -> list[int]:
    """quality[i]: how good a cut just before token i is (i in 1..n-1; 0 and n are ends)."""
    n = len(starts)
    quality = [_PARAGRAPH] * (n + 1)
    for i in range(1, n):
        gap_start, gap_end = ends[i - 1], starts[i]
        # Byte-level BPE tokens carry their leading space inside the token's span.
        token_end = ends[i]
        while gap_end < token_end and text[gap_end].isspace():
            gap_end += 1
        if gap_end > gap_start and not text[gap_start:gap_end].isspace():
            # Characters the tokenizer dropped (controls) sit between the tokens: not a space.
            gap = "".join(ch for ch in text[gap_start:gap_end] if ch.isspace())
        else:
            gap = text[gap_start:gap_end]
        if gap:
            newlines = gap.count("\n")
            if newlines >= 2:
                quality[i] = _PARAGRAPH
            elif _ends_sentence(text, gap_start, gap_end, wide_only=False):
                quality[i] = _SENTENCE
            elif newlines:
                quality[i] = _LINE
            else:
                quality[i] = _SPACE
        elif _ends_sentence(text, gap_start, starts[i], wide_only=True):
            quality[i] = _SENTENCE
        elif words[i] is None or words[i] != words[i - 1]:
            quality[i] = _WORD
        else:
            quality[i] = _INSIDE_WORD
    return quality


def _ends_sentence(text: str, end: int, next_start: int, *, wide_only: bool) -> bool:
    """Whether text[:end] ends a sentence: terminal punctuation, maybe then closing quotes."""
    pos = end - 1
    while pos >= 0 and end - pos <= 3 and text[pos] in _CLOSERS:
        pos -= 1
    if pos < 0:
        return False
    char = text[pos]
    if char in _WIDE_TERMINALS:
        return True
    if wide_only or char not in _TERMINALS:
        return False
    # "e.g. the" or "approx. five": a lower-case continuation is not a new sentence.
    return next_start >= len(text) or not text[next_start].islower()


def _best_cut(quality: list[int], low: int, high: int, floor: int) -> int:
    """The best cut in [low, high], the latest among equals; else a word break down to floor."""
    best, best_quality = high, quality[high]
    for i in range(high - 1, low - 1, -1):
        if quality[i] > best_quality:
            best, best_quality = i, quality[i]
            if best_quality == _PARAGRAPH:
                break
    if best_quality > _INSIDE_WORD:
        return best
    # A word longer than the tail: end the chunk early rather than split the word, whose
    # halves would re-tokenise differently; only a word longer than the window is cut.
    for i in range(low - 1, floor - 1, -1):
        if quality[i] > _INSIDE_WORD:
            return i
    return high


def _next_first(quality: list[int], cut: int, overlap: int, first: int) -> int:
    """The next chunk's first token: about `overlap` tokens before the cut, at a word start."""
    if overlap == 0:
        return cut
    # Past the current chunk's start, so that a huge overlap still moves forward.
    earliest = max(first + 1, cut - overlap)
    # After whitespace first: a cut before punctuation would start the chunk with ", and".
    for wanted in (_SPACE, _WORD):
        for i in range(earliest, cut):
            if quality[i] >= wanted:
                return i
    # Starting mid-word would make the token count wrong: give up this overlap, unless the cut
    # itself is mid-word (an unbreakable run), where overlapping keeps the context instead.
    return earliest if quality[cut] == _INSIDE_WORD else cut


def _make_chunk(
    text: str, index: int, starts: list[int], ends: list[int], first: int, cut: int
) -> Chunk:
    """The chunk of tokens [first, cut), its span trimmed of edge whitespace."""
    start, end = starts[first], ends[cut - 1]
    # Accent-stripping tokenizers leave combining marks out of the spans; keep them with the
    # letter they belong to rather than split a character (say "e" + U+0301) across chunks.
    while end < len(text) and unicodedata.category(text[end]).startswith("M"):
        end += 1
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Chunk(index, text, start, end, cut - first)
