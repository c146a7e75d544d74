"""Real txt, Markdown, HTML, PDF and DOCX test files, each carrying a given fact sentence."""

from __future__ import annotations

import io
from html import escape
from pathlib import Path

FILLER = (
    "This paragraph is filler that surrounds the fact, so that parsers must find it among "
    "other text rather than receive it alone."
)


def _write(directory: Path, name: str, data: bytes) -> Path:
    """Write data to directory/name and return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    return path


def txt_bytes(fact: str) -> bytes:
    """A UTF-8 text file: a title line, filler and the fact in its own paragraph."""
    return f"Notes\n\n{FILLER}\n\n{fact}\n\n{FILLER}\n".encode()


def md_bytes(fact: str, title: str = "Test Document") -> bytes:
    """Markdown with a heading, emphasis, a link, a list, filler, the fact and a code block."""
    return (
        f"# {title}\n\n"
        f"Some **bold** words and a [link](https://example.com/page).\n\n"
        f"- first item\n- second item\n\n"
        f"{FILLER}\n\n"
        f"{fact}\n\n"
        f"```\ncode_block = True\n```\n"
    ).encode()


def html_bytes(fact: str, title: str = "Test Page") -> bytes:
    """An HTML page with a title, a nav bar, a script, a style and the fact in a paragraph."""
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title>"
        "<style>body { color: red; }</style>"
        "<script>var secret = 'SCRIPT_TEXT_MUST_NOT_APPEAR';</script></head>"
        "<body><nav><a href='/'>Home</a> <a href='/about'>NAV_TEXT_MUST_NOT_APPEAR</a></nav>"
        f"<h1>{escape(title)}</h1><p>{escape(FILLER)}</p>"
        f"<p>{escape(fact)}</p>"
        "<ul><li>first item</li><li>second item</li></ul>"
        "<script>document.write('SCRIPT_TEXT_MUST_NOT_APPEAR');</script>"
        "</body></html>\n"
    ).encode()


def pdf_bytes(fact: str, pages: int = 2, title: str = "Test PDF") -> bytes:
    """A real PDF (fpdf2, Helvetica) with filler on every page and the fact on the last."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title(title)
    pdf.set_font("Helvetica", size=12)
    for number in range(1, pages + 1):
        pdf.add_page()
        pdf.multi_cell(0, 8, f"Page {number}. {FILLER}")
        if number == pages:
            pdf.ln(4)
            pdf.multi_cell(0, 8, fact)
    return bytes(pdf.output())


def docx_bytes(fact: str, table_fact: str | None = None, title: str = "Test Report") -> bytes:
    """A DOCX with a heading, paragraphs with the fact, and a table (whose cell may hold a fact)."""
    import docx

    document = docx.Document()
    document.add_heading(title, level=1)
    document.add_paragraph(FILLER)
    document.add_paragraph(fact)
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Name"
    table.cell(0, 1).text = "Value"
    table.cell(1, 0).text = "Fact"
    table.cell(1, 1).text = table_fact or "table cell text"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def corrupt_pdf_bytes() -> bytes:
    """Starts like a PDF, then garbage: no xref, no objects."""
    return b"%PDF-1.7\n" + bytes(range(256)) * 8 + b"\nthis is not a pdf body\n%%EOF\n"


def make_txt(directory: Path, fact: str, name: str = "doc.txt") -> Path:
    """A .txt file containing the fact."""
    return _write(directory, name, txt_bytes(fact))


def make_md(directory: Path, fact: str, name: str = "doc.md") -> Path:
    """A .md file containing the fact."""
    return _write(directory, name, md_bytes(fact))


def make_html(directory: Path, fact: str, name: str = "doc.html") -> Path:
    """An .html file containing the fact."""
    return _write(directory, name, html_bytes(fact))


def make_pdf(directory: Path, fact: str, name: str = "doc.pdf") -> Path:
    """A .pdf file containing the fact."""
    return _write(directory, name, pdf_bytes(fact))


def make_docx(directory: Path, fact: str, name: str = "doc.docx") -> Path:
    """A .docx file containing the fact."""
    return _write(directory, name, docx_bytes(fact))


def make_corrupt_pdf(directory: Path, name: str = "broken.pdf") -> Path:
    """A .pdf file that is not a readable PDF."""
    return _write(directory, name, corrupt_pdf_bytes())


def make_all(directory: Path, facts: dict[str, str]) -> dict[str, Path]:
    """One file per format, keyed by extension ('txt', 'md', ...), each with its own fact."""
    makers = {
        "txt": make_txt,
        "md": make_md,
        "html": make_html,
        "pdf": make_pdf,
        "docx": make_docx,
    }
    return {ext: makers[ext](directory, fact, f"doc.{ext}") for ext, fact in facts.items()}
