"""Token-aware chunking with the bundled model's real tokenizer, and the stable ids."""

from __future__ import annotations

import itertools
import json
import random
import re
import time
import unicodedata
import uuid
from pathlib import Path
from typing import Any

import pytest

from rag_appliance.ingest import chunking
from rag_appliance.ingest.chunking import (
    CHUNK_ID_NAMESPACE,
    Chunk,
    ChunkingParams,
    TooManyChunks,
    chunk_text,
    content_hash,
    doc_id_from_content,
    stable_chunk_id,
)

WORDS = [
    "river", "stone", "lantern", "quiet", "harbor", "signal", "copper", "meadow", "orbit",
    "planet", "garden", "thunder", "violin", "ledger", "pepper", "glacier", "compass", "willow",
    "marble", "beacon", "canyon", "saddle", "falcon", "ember",
]  # fmt: skip


def n_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def prose(n_sentences: int, seed: int = 0, paragraph_every: int = 0) -> str:
    """Deterministic sentences of 6-18 words; a blank line every `paragraph_every` sentences."""
    rng = random.Random(seed)
    parts: list[str] = []
    for i in range(n_sentences):
        words = rng.choices(WORDS, k=rng.randint(6, 18))
        parts.append(" ".join(words).capitalize() + rng.choice(".!?"))
        if paragraph_every and (i + 1) % paragraph_every == 0:
            parts.append("\n\n")
        else:
            parts.append(" ")
    return "".join(parts).strip()


def assert_valid(chunks: list[Chunk], text: str, tokenizer: Any, params: ChunkingParams) -> None:
    """Exact slices, token counts that re-tokenise the same, ordered and covering the text."""
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.text == text[chunk.start_char : chunk.end_char]
        assert chunk.text == chunk.text.strip() and chunk.text
        assert 0 < chunk.n_tokens <= params.max_tokens
        assert n_tokens(tokenizer, chunk.text) == chunk.n_tokens
    for before, after in itertools.pairwise(chunks):
        assert before.start_char < after.start_char
        assert before.end_char < after.end_char
    covered = [False] * len(text)
    for chunk in chunks:
        covered[chunk.start_char : chunk.end_char] = [True] * (chunk.end_char - chunk.start_char)
    # Whitespace between chunks may be left out, and so may the controls and zero-width
    # characters that the tokenizer itself drops; nothing else.
    missed = [
        i
        for i, ch in enumerate(text)
        if not covered[i] and not ch.isspace() and unicodedata.category(ch) not in ("Cc", "Cf")
    ]
    assert not missed, f"uncovered characters at {missed[:10]}"


def test_empty_text_has_no_chunks(tokenizer: Any) -> None:
    assert chunk_text("", tokenizer, ChunkingParams()) == []
    assert chunk_text(" \n\n\t ", tokenizer, ChunkingParams()) == []


def test_short_text_is_one_chunk(tokenizer: Any) -> None:
    text = "  A short note about the harbor lantern.\n"
    chunks = chunk_text(text, tokenizer, ChunkingParams(max_tokens=64, overlap_tokens=8))
    assert len(chunks) == 1
    chunk = chunks[0]
    assert chunk.text == "A short note about the harbor lantern."
    assert (chunk.start_char, chunk.end_char) == (2, len(text) - 1)
    assert chunk.n_tokens == n_tokens(tokenizer, text)


def test_text_of_exactly_max_tokens_is_one_chunk(tokenizer: Any) -> None:
    text = " ".join(["lantern"] * 32)
    assert n_tokens(tokenizer, text) == 32
    assert len(chunk_text(text, tokenizer, ChunkingParams(max_tokens=32, overlap_tokens=4))) == 1
    assert len(chunk_text(text, tokenizer, ChunkingParams(max_tokens=31, overlap_tokens=4))) == 2


@pytest.mark.parametrize(
    ("max_tokens", "overlap"), [(8, 0), (16, 4), (64, 8), (128, 32), (256, 32), (100, 99)]
)
def test_long_text_chunks_are_valid(tokenizer: Any, max_tokens: int, overlap: int) -> None:
    text = prose(150, seed=max_tokens, paragraph_every=7)
    params = ChunkingParams(max_tokens=max_tokens, overlap_tokens=overlap)
    chunks = chunk_text(text, tokenizer, params)
    assert len(chunks) > 1
    assert_valid(chunks, text, tokenizer, params)


def test_consecutive_chunks_overlap(tokenizer: Any) -> None:
    text = prose(120, seed=1)
    params = ChunkingParams(max_tokens=64, overlap_tokens=16)
    chunks = chunk_text(text, tokenizer, params)
    assert len(chunks) > 3
    for before, after in itertools.pairwise(chunks):
        shared = text[after.start_char : before.end_char]
        assert before.text.endswith(shared) and after.text.startswith(shared)
        # About the requested overlap: at word starts it can only be a little shorter.
        assert 12 <= n_tokens(tokenizer, shared) <= 16


def test_overlaps_start_at_words_not_punctuation(tokenizer: Any) -> None:
    text = ", ".join(WORDS * 20) + "."
    params = ChunkingParams(max_tokens=30, overlap_tokens=7)
    chunks = chunk_text(text, tokenizer, params)
    assert len(chunks) > 10
    assert_valid(chunks, text, tokenizer, params)
    assert all(chunk.text[0].isalpha() for chunk in chunks)


def test_no_overlap_means_adjacent_chunks(tokenizer: Any) -> None:
    text = prose(80, seed=2)
    chunks = chunk_text(text, tokenizer, ChunkingParams(max_tokens=40, overlap_tokens=0))
    assert sum(c.n_tokens for c in chunks) == n_tokens(tokenizer, text)
    for before, after in itertools.pairwise(chunks):
        assert before.end_char <= after.start_char
        assert text[before.end_char : after.start_char].isspace()


def test_chunks_end_at_sentence_boundaries(tokenizer: Any) -> None:
    text = prose(200, seed=3)
    params = ChunkingParams(max_tokens=100, overlap_tokens=10)
    chunks = chunk_text(text, tokenizer, params)
    # Sentences are at most ~20 tokens, so every window's last 20% holds a sentence end.
    for chunk in chunks:
        assert chunk.text[-1] in ".!?"
        assert chunk.n_tokens >= 80 or chunk is chunks[-1]


def test_paragraph_breaks_are_preferred_to_sentence_ends(tokenizer: Any) -> None:
    first = " ".join(["The stone is red."] * 17)  # 85 tokens, a sentence end every 5
    text = first + "\n\n" + " ".join(["The lantern is lit."] * 40)
    chunks = chunk_text(text, tokenizer, ChunkingParams(max_tokens=100, overlap_tokens=0))
    # The paragraph break at 85% of the window beats the sentence ends at 90, 95 and 100.
    assert chunks[0].text == first


def test_sentence_ends_are_preferred_to_word_breaks(tokenizer: Any) -> None:
    sentence = "The harbor lantern burned all night."  # 7 tokens
    tail = " ".join(["Willow"] * 60)
    text = " ".join(["copper"] * 45) + ". " + sentence + " " + tail
    chunks = chunk_text(text, tokenizer, ChunkingParams(max_tokens=56, overlap_tokens=0))
    # The latest sentence end in the window's tail wins over the word breaks after it.
    assert chunks[0].text.endswith(sentence)
    assert chunks[0].n_tokens == 53


def test_abbreviations_are_not_sentence_ends(tokenizer: Any) -> None:
    # "e.g. the" continues in lower case: the cut goes to the real sentence end instead.
    text = (
        " ".join(["copper"] * 44)
        + " e.g. the lantern and the stone and the willow by the river. "
        + " ".join(["meadow"] * 40)
    )
    chunks = chunk_text(text, tokenizer, ChunkingParams(max_tokens=60, overlap_tokens=0))
    assert chunks[0].text.endswith("river.")


def test_unbreakable_words_are_cut_hard(tokenizer: Any) -> None:
    # BERT caps a word at 100 characters (longer ones are one [UNK]); 99 random consonants make
    # ~70 word pieces, more than a window, with no boundary inside.
    rng = random.Random(8)
    text = " ".join("".join(rng.choices("bcdfghjklmnpqrstvwxz", k=99)) for _ in range(12))
    params = ChunkingParams(max_tokens=50, overlap_tokens=5)
    chunks = chunk_text(text, tokenizer, params)
    assert len(chunks) > 12
    for chunk in chunks:
        assert chunk.text == text[chunk.start_char : chunk.end_char]
        assert 0 < chunk.n_tokens <= 50
    assert chunks[0].start_char == 0 and chunks[-1].end_char == len(text)
    for before, after in itertools.pairwise(chunks):
        if text[before.end_char].isspace():
            assert text[before.end_char : after.start_char].isspace() or (
                after.start_char < before.end_char
            )
        else:  # a hard cut inside a word: the next chunk still overlaps it
            assert after.start_char < before.end_char


def test_long_words_end_a_chunk_early_rather_than_split(tokenizer: Any) -> None:
    # Made-up words of ~10 word pieces: longer than a 20-token window's 4-token tail.
    rng = random.Random(9)
    words = ["".join(rng.choices("bcdfghjklmnpqrstvwxz", k=14)) for _ in range(40)]
    text = " ".join(w if i % 3 else "river" for i, w in enumerate(words))
    params = ChunkingParams(max_tokens=20, overlap_tokens=3)
    chunks = chunk_text(text, tokenizer, params)
    assert_valid(chunks, text, tokenizer, params)  # exact re-tokenisation: no word was split
    for chunk in chunks:
        assert chunk.start_char == 0 or text[chunk.start_char - 1] == " "
        assert chunk.end_char == len(text) or text[chunk.end_char] == " "


def test_cjk_text_is_cut_between_characters(tokenizer: Any) -> None:
    text = "東京は日本の首都です。" * 60  # 11 tokens a sentence, no spaces at all
    params = ChunkingParams(max_tokens=64, overlap_tokens=8)
    chunks = chunk_text(text, tokenizer, params)
    assert len(chunks) > 5
    assert_valid(chunks, text, tokenizer, params)
    # A full-width full stop ends a sentence without a space after it.
    assert all(c.text.endswith("。") for c in chunks)
    assert all(
        c.text.startswith(("東", "京", "は", "日", "本", "の", "首", "都", "で")) for c in chunks
    )


def test_structured_text_with_lines_and_tabs(tokenizer: Any) -> None:
    lines = [
        f"- item {i}:\tthe {WORDS[i % len(WORDS)]} entry, see https://example.com/{i}"
        for i in range(300)
    ]
    text = "# Heading\n\n" + "\n".join(lines) + "\n\n\n  Trailing paragraph.  \n"
    params = ChunkingParams(max_tokens=100, overlap_tokens=10)
    chunks = chunk_text(text, tokenizer, params)
    assert_valid(chunks, text, tokenizer, params)
    # Lines are ~18 tokens and the window's last 20% is 20: every chunk ends with a line.
    for chunk in chunks:
        assert chunk.end_char == len(text.rstrip()) or text[chunk.end_char] == "\n"


def test_control_characters_and_accents(tokenizer: Any) -> None:
    text = ("Café naïve\x07 déjà vu — résumé 😀 Straße. " * 60).strip()
    params = ChunkingParams(max_tokens=40, overlap_tokens=5)
    chunks = chunk_text(text, tokenizer, params)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.text == text[chunk.start_char : chunk.end_char]
        assert chunk.n_tokens <= 40


MIXED = [
    "word", "Hello,", "world.", "e.g.", "3.14", "U.S.A.", "https://x.org/a?b=1", "“quoted.”",
    "(paren)", "naïve", "Straße", "東京。", "😀", "—", "-", "\n", "\n\n", "\t", "don't",
    "x\x07y", "\uff46\uff55\uff4c\uff4c", "İstanbul", "\ufb01ne", "a\u0301", "\u200b", "OK!",
    "Why?",
]  # fmt: skip


@pytest.mark.parametrize("seed", range(40))
def test_mixed_text_property(tokenizer: Any, seed: int) -> None:
    # Punctuation, URLs, CJK, emoji, controls, ligatures and combining marks, random sizes.
    rng = random.Random(seed)
    text = " ".join(rng.choice(MIXED) for _ in range(rng.randint(0, 300)))
    size = rng.randint(8, 120)
    params = ChunkingParams(max_tokens=size, overlap_tokens=rng.randint(0, size - 1))
    assert_valid(chunk_text(text, tokenizer, params), text, tokenizer, params)


def test_deterministic(tokenizer: Any) -> None:
    text = prose(100, seed=6, paragraph_every=5)
    params = ChunkingParams(max_tokens=64, overlap_tokens=8)
    assert chunk_text(text, tokenizer, params) == chunk_text(text, tokenizer, params)


def test_one_megabyte_is_fast(tokenizer: Any) -> None:
    block = prose(400, seed=7, paragraph_every=6)
    text = ((block + "\n\n") * (1_000_000 // len(block) + 1))[:1_000_000]
    params = ChunkingParams(max_tokens=256, overlap_tokens=32)
    started = time.perf_counter()
    chunks = chunk_text(text, tokenizer, params)
    elapsed = time.perf_counter() - started
    assert elapsed < 20, f"chunking 1 MB took {elapsed:.1f} s"
    assert len(chunks) > 500
    for chunk in chunks:
        assert chunk.text == text[chunk.start_char : chunk.end_char]
        assert chunk.n_tokens <= 256
    # Re-tokenising every chunk would take longer than chunking itself; a sample will do.
    for chunk in chunks[:: len(chunks) // 20]:
        assert n_tokens(tokenizer, chunk.text) == chunk.n_tokens
    assert chunks[0].start_char == 0
    assert chunks[-1].end_char == len(text.rstrip())
    assert all(b.start_char < a.end_char for a, b in itertools.pairwise(chunks))


# --- parameters ----------------------------------------------------------------------------------


def test_params_defaults() -> None:
    assert ChunkingParams() == ChunkingParams(max_tokens=256, overlap_tokens=32)


@pytest.mark.parametrize(
    ("max_tokens", "overlap"),
    [(7, 0), (0, 0), (-5, 0), (64, 64), (64, 100), (64, -1), (64.0, 8), (True, 0), (64, None)],
)
def test_params_validation(max_tokens: Any, overlap: Any) -> None:
    with pytest.raises(ValueError):
        ChunkingParams(max_tokens=max_tokens, overlap_tokens=overlap)


def test_params_edges_are_allowed() -> None:
    ChunkingParams(max_tokens=8, overlap_tokens=0)
    ChunkingParams(max_tokens=8, overlap_tokens=7)


def test_slow_tokenizer_is_refused() -> None:
    def slow(text: str, **kwargs: Any) -> Any:
        raise NotImplementedError("return_offset_mapping is not available")

    with pytest.raises(TypeError, match="fast tokenizer"):
        chunk_text("some text", slow, ChunkingParams())


# --- ids and hashes ------------------------------------------------------------------------------


def test_stable_chunk_ids() -> None:
    first = stable_chunk_id("doc-1", 0)
    assert first == stable_chunk_id("doc-1", 0)
    assert uuid.UUID(first).version == 5
    assert first == str(uuid.uuid5(CHUNK_ID_NAMESPACE, "doc-1\x000"))
    docs = ("doc-1", "doc-2", "doc-10", "doc-1 ")
    ids = {stable_chunk_id(doc, i) for doc in docs for i in range(50)}
    assert len(ids) == 200
    # The separator keeps ("doc-1", 10) and ("doc-11", 0) apart.
    assert stable_chunk_id("doc-1", 10) != stable_chunk_id("doc-11", 0)
    with pytest.raises(ValueError):
        stable_chunk_id("doc-1", -1)


def test_stable_chunk_id_is_pinned() -> None:
    # Stored points are addressed by these ids: they must never change between releases.
    assert stable_chunk_id("sha256:abc", 3) == str(
        uuid.uuid5(uuid.UUID("9327c8a7-f18a-44b2-b156-4ea3cf18af2d"), "sha256:abc\x003")
    )


def test_content_hash_and_doc_id() -> None:
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert content_hash("") == empty
    assert content_hash("héllo") == content_hash("héllo")
    assert content_hash("a") != content_hash("b")
    assert content_hash("bad \ud800 surrogate")  # no UnicodeEncodeError
    doc_id = doc_id_from_content("")
    assert doc_id == "sha256:" + empty[:32]
    assert re.fullmatch(r"sha256:[0-9a-f]{32}", doc_id_from_content("some document"))


# --- long texts: windows ---------------------------------------------------------------------


def corpus_text(chars: int) -> str:
    path = Path(__file__).resolve().parents[2] / "data" / "beir-manpages" / "corpus.jsonl"
    texts = [json.loads(line)["text"] for line in path.read_text().splitlines()]
    return "\n\n".join(texts)[:chars]


def test_windowed_chunking_equals_whole_text_chunking(
    tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = corpus_text(120_000)
    params = ChunkingParams(max_tokens=200, overlap_tokens=32)
    whole = chunk_text(text, tokenizer, params)
    monkeypatch.setattr(chunking, "SEGMENT_CHARS", 9_000)  # about a dozen windows
    windowed = chunk_text(text, tokenizer, params)
    assert windowed == whole
    assert all(c.text == text[c.start_char : c.end_char] for c in windowed)
    # Each chunk slices the document itself when asked: no chunk keeps a copy of its text.
    assert all(c.source is text for c in windowed)
    assert not hasattr(windowed[0], "__dict__")


def test_more_chunks_than_allowed_raises(tokenizer: Any) -> None:
    text = corpus_text(20_000)
    params = ChunkingParams(max_tokens=64, overlap_tokens=8)
    assert len(chunk_text(text, tokenizer, params, max_chunks=10_000)) > 20
    with pytest.raises(TooManyChunks):
        chunk_text(text, tokenizer, params, max_chunks=20)
