"""Content sniffing: a file said to be text (by type or name) but binary is a 415 naming it."""

from __future__ import annotations

import codecs

import pytest

from rag_appliance.errors import UnsupportedMediaType
from rag_appliance.ingest.parsers import binary_content, parse
from tests import docs_factory as f

FACT = "The night train to Kiruna has 11 carriages and one dining car."
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 64


@pytest.mark.parametrize(
    ("data", "name", "media_type", "named"),
    [
        (f.docx_bytes(FACT), "ok.txt", "text/plain", "DOCX"),
        (f.docx_bytes(FACT), "ok.txt", None, "DOCX"),
        (f.pdf_bytes(FACT), "notes.md", None, "PDF"),
        (f.pdf_bytes(FACT), "page", "text/html", "PDF"),
        (PNG, "page.html", None, "image/png"),
        (b"\x1f\x8b\x08\x00" + b"\x00" * 40, "log.txt", None, "gzip"),
        (b"text\x00with\x00NULs" * 20, "a.txt", "text/plain", "binary data"),
    ],
)
def test_binary_said_to_be_text_is_a_415_naming_it(
    data: bytes, name: str, media_type: str | None, named: str
) -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        parse(data, name, media_type)
    assert info.value.status == 415 and info.value.code == "content_type_mismatch"
    assert named in info.value.message


@pytest.mark.parametrize(
    "data",
    [
        FACT.encode(),
        codecs.BOM_UTF16_LE + FACT.encode("utf-16-le"),
        # A coloured log: ANSI escapes are control bytes, and still text.
        b"\x1b[32mINFO\x1b[0m started\n" * 40,
        "Ærø Ölkörv café".encode("cp1252"),
    ],
)
def test_text_stays_text(data: bytes) -> None:
    assert binary_content(data) is None
    assert parse(data, "notes.txt", "text/plain").text
