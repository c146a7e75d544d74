"""Parsing of txt, Markdown, HTML, PDF and DOCX uploads: type detection, dispatch and errors."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from rag_appliance.errors import InvalidRequest, UnsupportedMediaType
from rag_appliance.ingest.parsers import (
    DOCX,
    HTML,
    MARKDOWN,
    PDF,
    SUPPORTED_EXTENSIONS,
    TEXT,
    ParsedDocument,
    detect_media_type,
    parse,
)
from tests import docs_factory as f

FACT = "The lighthouse keeper on Skerry Point counted 4217 gulls on a windless Tuesday."

FORMATS = {
    "txt": (f.make_txt, TEXT),
    "md": (f.make_md, MARKDOWN),
    "html": (f.make_html, HTML),
    "pdf": (f.make_pdf, PDF),
    "docx": (f.make_docx, DOCX),
}


@pytest.mark.parametrize("ext", sorted(FORMATS))
def test_every_format_round_trips_the_fact(ext: str, tmp_path: Path) -> None:
    make, kind = FORMATS[ext]
    path = make(tmp_path, FACT)
    assert path.suffix == f".{ext}"
    doc = parse(path.read_bytes(), path.name)
    assert isinstance(doc, ParsedDocument)
    assert doc.media_type == kind
    assert FACT in doc.text
    assert f.FILLER in " ".join(doc.text.split())  # PDFs wrap lines inside the filler
    assert doc.text == doc.text.strip()
    assert "\n\n\n" not in doc.text and "  " not in doc.text


def test_titles() -> None:
    assert parse(f.txt_bytes(FACT), "a.txt").title is None
    assert parse(f.md_bytes(FACT, title="Field Notes"), "a.md").title == "Field Notes"
    assert parse(f.html_bytes(FACT, title="Bird  Count\n2024"), "a.html").title == "Bird Count 2024"
    assert parse(f.pdf_bytes(FACT, title="Survey"), "a.pdf").title == "Survey"
    assert parse(f.docx_bytes(FACT, title="Quarterly Report"), "a.docx").title == (
        "Quarterly Report"
    )


# --- type detection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("media_type", "kind"),
    [
        ("text/plain", TEXT),
        ("text/plain; charset=utf-8", TEXT),
        ("TEXT/HTML", HTML),
        ("text/markdown", MARKDOWN),
        ("text/x-markdown", MARKDOWN),
        ("application/xhtml+xml", HTML),
        ("application/pdf", PDF),
        (DOCX, DOCX),
    ],
)
def test_detection_by_media_type(media_type: str, kind: str) -> None:
    # The name disagrees on purpose: a specific media type wins.
    assert detect_media_type(b"x", "file.bin", media_type)[0] == kind


@pytest.mark.parametrize(
    ("filename", "kind"),
    [
        ("a.txt", TEXT),
        ("A.MD", MARKDOWN),
        ("notes.markdown", MARKDOWN),
        ("page.htm", HTML),
        ("page.html", HTML),
        ("paper.PDF", PDF),
        ("report.docx", DOCX),
        ("C:\\Users\\me\\report.docx", DOCX),
        ("../../etc/passwd.txt", TEXT),
    ],
)
def test_detection_by_extension(filename: str, kind: str) -> None:
    for media_type in (None, "", "application/octet-stream"):
        assert detect_media_type(b"x", filename, media_type)[0] == kind


def test_detection_by_magic_bytes() -> None:
    assert detect_media_type(f.pdf_bytes(FACT))[0] == PDF
    assert detect_media_type(f.docx_bytes(FACT), "upload", "application/octet-stream")[0] == DOCX
    assert detect_media_type(f.html_bytes(FACT))[0] == HTML
    assert detect_media_type(b"  <html><body>x</body></html>")[0] == HTML
    assert detect_media_type(codecs.BOM_UTF8 + b"<!doctype html><p>x</p>")[0] == HTML
    assert detect_media_type(b"plain words, nothing else")[0] == TEXT
    # An unknown extension is no obstacle when the content says what it is.
    assert detect_media_type(f.pdf_bytes(FACT), "scan.bin")[0] == PDF


def test_parse_without_name_or_type_sniffs() -> None:
    assert FACT in parse(f.docx_bytes(FACT)).text
    assert FACT in parse(f.pdf_bytes(FACT)).text
    assert parse(FACT.encode()).media_type == TEXT


def test_charset_parameter_is_used() -> None:
    kind, charset = detect_media_type(b"x", None, 'text/plain; charset="ISO-8859-1"')
    assert (kind, charset) == (TEXT, "ISO-8859-1")
    assert parse("Ærø Ölkörv".encode("latin-1"), "a.txt", "text/plain; charset=latin-1").text == (
        "Ærø Ölkörv"
    )


def test_supported_extensions() -> None:
    assert {".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"} == SUPPORTED_EXTENSIONS
    assert all(ext.startswith(".") and ext == ext.lower() for ext in SUPPORTED_EXTENSIONS)


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "media_type", "named"),
    [
        ("setup.exe", None, ".exe"),
        ("photo.png", "image/png", "image/png"),
        ("data.json", "application/json", "application/json"),
        ("archive.zip", "application/zip", ".zip"),
        (None, "image/png", "image/png"),
    ],
)
def test_unsupported_types(filename: str | None, media_type: str | None, named: str) -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        parse(b"MZ\x90\x00\x03\x00\x00\x00binary", filename, media_type)
    message = info.value.message
    assert info.value.status == 415
    assert named in message
    assert ".pdf" in message and ".docx" in message and "text/html" in message


def test_unrecognisable_binary_without_name_is_unsupported() -> None:
    with pytest.raises(UnsupportedMediaType):
        parse(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"", "empty.txt"),
        (b"", None),
        (b"   \n\t\r\n  ", "blank.txt"),
        (codecs.BOM_UTF8 + b"  \n", "bom.txt"),
        (
            b"<html><head><title>T</title></head><body>  <script>x()</script></body></html>",
            "a.html",
        ),
        (b"", "empty.pdf"),
    ],
)
def test_empty_documents(data: bytes, filename: str | None) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse(data, filename)
    assert info.value.code == "empty_document"
