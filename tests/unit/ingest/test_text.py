"""Decoding of uploaded text (BOMs, legacy charsets, noise) and text normalisation."""

from __future__ import annotations

import codecs
import random

import pytest

from rag_appliance.ingest.parsers import parse
from rag_appliance.ingest.text import decode_text, normalize_text

FACT = "The lighthouse keeper on Skerry Point counted 4217 gulls on a windless Tuesday."


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (codecs.BOM_UTF8 + "héllo".encode(), "héllo"),
        (codecs.BOM_UTF16_LE + "héllo".encode("utf-16-le"), "héllo"),
        (codecs.BOM_UTF16_BE + "héllo".encode("utf-16-be"), "héllo"),
        (codecs.BOM_UTF32_LE + "héllo".encode("utf-32-le"), "héllo"),
        ("naïve façade".encode(), "naïve façade"),
    ],
)
def test_decode_with_boms_and_utf8(data: bytes, expected: str) -> None:
    assert decode_text(data) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Café crème brûlée, naïve façade, déjà vu.",
        "Grüße aus München, schöne Straße.",
        "The “smart quotes” and an en dash \u2013 from Word.",
    ],
)
def test_non_utf8_western_text_decodes(text: str) -> None:
    doc = parse(text.encode("cp1252"), "legacy.txt")
    assert doc.text == text


def test_any_bytes_decode_without_crashing() -> None:
    data = bytes(range(1, 256)) * 4
    text = decode_text(data)
    assert isinstance(text, str) and text
    assert parse(b"ok " + data, "noise.txt").text.startswith("ok")


def test_utf16_text_file_parses() -> None:
    data = codecs.BOM_UTF16_LE + f"{FACT}\r\n".encode("utf-16-le")
    assert parse(data, "windows.txt").text == FACT


def test_normalize_text() -> None:
    raw = (
        "  Title\r\n\r\n\r\n\r\nFirst\u00a0 \t line  \nsecond\x00 line\u200b\r\r"
        "x\x0cnext page\u2029para\u00adgraph\x85end  "
    )
    assert normalize_text(raw) == (
        "Title\n\nFirst line\nsecond line\n\nx\n\nnext page\n\nparagraph\nend"
    )
    # Composed and decomposed accents end up the same.
    assert normalize_text("cafe\u0301") == "café"


# Line breaks, blanks, controls, accents and the letters a segment may start with.
_PIECES = ["\n", "\r\n", "\r", " ", "\t", "\u00a0", "\x00", "\u200b", "\x0c", "\x85"]
_PIECES += ["\u2029", "e", "\u0301", "A", "7", ".", "é", "\u1100", "\u1161", "x y"]


def test_a_long_text_normalised_in_segments_is_normalised_whole() -> None:
    # A long text is normalised a segment at a time (less memory); the result must not change.
    rng = random.Random(12)
    for _ in range(2000):
        text = "".join(rng.choices(_PIECES, k=rng.randint(0, 200)))
        segment = rng.randint(2, 40)
        whole = normalize_text(text, segment_chars=len(text) + 1)
        assert normalize_text(text, segment_chars=segment) == whole, repr(text)
