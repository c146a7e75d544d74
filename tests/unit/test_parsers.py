"""Parsing of txt, Markdown, HTML, PDF and DOCX uploads: text, type detection and errors."""

from __future__ import annotations

import codecs
import io
import zipfile
from pathlib import Path

import pytest

from rag_appliance.errors import InvalidRequest, UnsupportedMediaType
from rag_appliance.ingest import parsers
from rag_appliance.ingest.parsers import (
    DOCX,
    HTML,
    MARKDOWN,
    PDF,
    SUPPORTED_EXTENSIONS,
    TEXT,
    ParsedDocument,
    decode_text,
    detect_media_type,
    normalize_text,
    parse,
)
from tests import docs_factory as f

FACT = "The lighthouse keeper on Skerry Point counted 4217 gulls on a windless Tuesday."
TABLE_FACT = "Reservoir Nine holds 88 million litres."

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


def test_pdf_pages_are_joined_with_blank_lines() -> None:
    text = parse(f.pdf_bytes(FACT, pages=3), "a.pdf").text
    assert text.startswith("Page 1.")
    assert "\n\nPage 2." in text and "\n\nPage 3." in text


def test_pdf_ligatures_are_unfolded(monkeypatch: pytest.MonkeyPatch) -> None:
    class Page:
        def extract_text(self) -> str:
            return "e\ufb03cient \ufb01sh"

    class Reader:
        is_encrypted = False
        pages = [Page()]
        metadata = None

        def __init__(self, stream: io.BytesIO) -> None:
            pass

    monkeypatch.setattr("pypdf.PdfReader", Reader)
    assert parse(b"%PDF-1.4 whatever", "a.pdf").text == "efficient fish"


def test_docx_tables_are_kept_in_order() -> None:
    text = parse(f.docx_bytes(FACT, table_fact=TABLE_FACT), "a.docx").text
    assert "Name | Value\nFact | " + TABLE_FACT in text
    assert text.index(FACT) < text.index(TABLE_FACT)


def test_docx_merged_cells_appear_once() -> None:
    import docx

    document = docx.Document()
    table = document.add_table(rows=1, cols=3)
    merged = table.cell(0, 0).merge(table.cell(0, 1))
    merged.text = "Merged heading"
    table.cell(0, 2).text = "Other"
    out = io.BytesIO()
    document.save(out)
    assert parse(out.getvalue(), "t.docx").text == "Merged heading | Other"


def test_markdown_markup_is_stripped() -> None:
    pytest.importorskip("markdown_it")
    text = parse(f.md_bytes(FACT), "notes.md").text
    assert "**" not in text and "](" not in text and "```" not in text and "# " not in text
    assert "Some bold words and a link." in text
    assert "first item\nsecond item" in text
    assert "code_block = True" in text


def test_markdown_front_matter_is_dropped() -> None:
    source = b"---\ntitle: Meta\ntags: [a, b]\n---\n# Heading\n\nBody text here.\n"
    doc = parse(source, "post.md")
    assert doc.text == "Heading\n\nBody text here."
    assert doc.title == "Heading"


def test_html_drops_scripts_styles_and_navigation() -> None:
    text = parse(f.html_bytes(FACT), "page.html").text
    assert FACT in text
    assert "SCRIPT_TEXT_MUST_NOT_APPEAR" not in text
    assert "NAV_TEXT_MUST_NOT_APPEAR" not in text
    assert "color: red" not in text
    assert "first item\nsecond item" in text


def test_html_structure_becomes_breaks() -> None:
    markup = (
        b"<html><body><div>One <b>bold</b>\n   word</div><p>Line a<br>Line b</p>"
        b"<table><tr><th>Key</th><th>Value</th></tr><tr><td>x</td><td>1</td></tr></table>"
        b"<pre>def f():\n    return 1</pre><!-- a comment --><p>caf&eacute;&nbsp;au lait</p>"
        b"</body></html>"
    )
    text = parse(markup, "page.htm").text
    assert text == (
        "One bold word\n\nLine a\nLine b\n\nKey | Value\nx | 1\n\ndef f():\nreturn 1\n\n"
        "café au lait"
    )


def test_html_meta_charset_is_honoured() -> None:
    markup = '<html><head><meta charset="windows-1252"></head><body><p>Déjà “vu”</p></body></html>'
    assert parse(markup.encode("cp1252"), "a.html").text == "Déjà “vu”"


def test_html_title_falls_back_to_first_heading() -> None:
    doc = parse(b"<html><body><h1>Only  Heading</h1><p>Text.</p></body></html>", "a.html")
    assert doc.title == "Only Heading"


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


def test_corrupt_pdf_is_unreadable(tmp_path: Path) -> None:
    path = f.make_corrupt_pdf(tmp_path)
    with pytest.raises(InvalidRequest) as info:
        parse(path.read_bytes(), path.name)
    assert info.value.code == "unreadable_file"
    assert info.value.status == 400
    assert "PDF" in info.value.message
    assert "Traceback" not in info.value.message and "pypdf" not in info.value.message


@pytest.mark.parametrize("data", [b"%PDF-1.4", b"%PDF-1.7\n%%EOF\n", b"%PDF-" + b"\xff" * 50])
def test_truncated_pdfs_are_unreadable(data: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse(data, "a.pdf")
    assert info.value.code == "unreadable_file"


@pytest.mark.parametrize(
    "data", [b"PK\x03\x04 not really a zip", b"plain text, not a zip at all", b"\x00" * 64]
)
def test_corrupt_docx_is_unreadable(data: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse(data, "a.docx")
    assert info.value.code == "unreadable_file"


def test_zip_without_word_document_is_unreadable_as_docx() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(InvalidRequest) as info:
        parse(out.getvalue(), "a.docx")
    assert info.value.code == "unreadable_file"
    with pytest.raises(UnsupportedMediaType):
        parse(out.getvalue())  # sniffing does not take any zip for a DOCX


def test_docx_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsers, "_MAX_DOCX_UNCOMPRESSED", 1000)
    with pytest.raises(InvalidRequest) as info:
        parse(f.docx_bytes(FACT), "a.docx")
    assert info.value.code == "unreadable_file"
    assert "decompressed" in info.value.message


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
        (b"\x00\x01\x02", "controls.txt"),
    ],
)
def test_empty_documents(data: bytes, filename: str | None) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse(data, filename)
    assert info.value.code == "empty_document"


def test_pdf_without_text_is_empty() -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(10, 10, 50, 50)
    with pytest.raises(InvalidRequest) as info:
        parse(bytes(pdf.output()), "scan.pdf")
    assert info.value.code == "empty_document"
    assert "OCR" in info.value.message


# --- decoding and normalisation ------------------------------------------------------------------


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
