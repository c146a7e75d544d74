"""The per-format parsers: Markdown, HTML, PDF and DOCX structure, titles and broken files."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from rag_appliance.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from rag_appliance.ingest.limits import ParseLimits
from rag_appliance.ingest.parsers import parse
from tests import docs_factory as f

FACT = "The lighthouse keeper on Skerry Point counted 4217 gulls on a windless Tuesday."
TABLE_FACT = "Reservoir Nine holds 88 million litres."


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


def test_docx_over_the_inflate_limit_is_refused() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        parse(f.docx_bytes(FACT), "a.docx", limits=ParseLimits(max_unzipped_bytes=1000))
    assert info.value.status == 413 and info.value.code == "file_too_complex"
    assert "ingest.max_unzipped_bytes" in info.value.message


def test_pdf_without_text_is_empty() -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(10, 10, 50, 50)
    with pytest.raises(InvalidRequest) as info:
        parse(bytes(pdf.output()), "scan.pdf")
    assert info.value.code == "empty_document"
    assert "OCR" in info.value.message
