"""The supported formats and one parser per format: bytes -> (raw text, title)."""

from __future__ import annotations

import io
import logging
import re
import unicodedata
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, XMLParsedAsHTMLWarning
from bs4.dammit import EncodingDetector

from rag_appliance.errors import InvalidRequest
from rag_appliance.ingest.limits import ParseLimits, check_zip, too_complex, too_much_text
from rag_appliance.ingest.text import decode_text

log = logging.getLogger(__name__)

# bs4 warns when a short text looks like a URL or a file name, or when XHTML is parsed as HTML;
# both are normal for uploads and would only fill the server log.
warnings.filterwarnings("ignore", category=MarkupResemblesLocatorWarning)
warnings.filterwarnings("ignore", category=XMLParsedAsHTMLWarning)

# The canonical media type of each supported format.
TEXT = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

Parser = Callable[[bytes, str | None, ParseLimits], tuple[str, str | None]]


def _parse_text(data: bytes, charset: str | None, limits: ParseLimits) -> tuple[str, str | None]:
    """Plain text has no title."""
    return decode_text(data, charset), None


_FRONT_MATTER = re.compile(r"\A---[ \t]*\n.*?\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)


def _parse_markdown(
    data: bytes, charset: str | None, limits: ParseLimits
) -> tuple[str, str | None]:
    """Render with markdown-it and keep the text; plain text when markdown-it is missing."""
    source = decode_text(data, charset)
    # YAML front matter (Jekyll, Hugo, Obsidian) is metadata, and CommonMark would render it.
    source = _FRONT_MATTER.sub("", source, count=1)
    try:
        from markdown_it import MarkdownIt
    except ImportError:  # pragma: no cover - markdown-it-py ships with rich, a dependency
        return source, _markdown_title(source)
    renderer = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    text, title = _html_to_text(renderer.render(source))
    return text, title or _markdown_title(source)


_ATX_HEADING = re.compile(r"^ {0,3}#\s+(.+?)(?:\s+#+)?\s*$", re.MULTILINE)


def _markdown_title(source: str) -> str | None:
    """The first '# heading', as the document's title."""
    match = _ATX_HEADING.search(source)
    return match.group(1) if match else None


def _parse_html(data: bytes, charset: str | None, limits: ParseLimits) -> tuple[str, str | None]:
    """Decode by BOM, meta charset or detection, then extract the visible text."""
    declared = charset or EncodingDetector.find_declared_encoding(data[:16384], is_html=True)
    return _html_to_text(decode_text(data, declared))


def _parse_pdf(data: bytes, charset: str | None, limits: ParseLimits) -> tuple[str, str | None]:
    """Each page's text with pypdf, pages separated by a blank line; pages and text bounded."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        # Many PDFs are "encrypted" with an empty user password only to restrict printing.
        opened: int
        try:
            opened = reader.decrypt("")
        except Exception:  # e.g. AES without the optional 'cryptography' package
            opened = 0
        if not opened:
            raise InvalidRequest("the PDF is password-protected", code="unreadable_file")
    if len(reader.pages) > limits.max_pdf_pages:
        raise too_complex(
            f"the PDF has {len(reader.pages):,} pages; at most {limits.max_pdf_pages:,} are read "
            "(ingest.max_pdf_pages)"
        )
    pages: list[str] = []
    failed = chars = 0
    for number, page in enumerate(reader.pages, start=1):
        try:
            pages.append(page.extract_text())
        except MemoryError:
            raise
        except Exception as exc:  # one broken page should not lose the rest of the document
            failed += 1
            log.warning("PDF page %d could not be read: %s: %s", number, type(exc).__name__, exc)
            continue
        chars += len(pages[-1])
        if chars > limits.max_document_chars:
            raise too_much_text(limits.max_document_chars)
    if failed and not pages:
        raise InvalidRequest("no page of the PDF could be read", code="unreadable_file")
    text = "\n\n".join(pages)
    if not text.strip():
        raise empty_document(PDF)
    # Compatibility forms undo the ligatures (U+FB01 'fi' ...) that PDF fonts often produce.
    return unicodedata.normalize("NFKC", text), _pdf_title(reader)


def _pdf_title(reader: Any) -> str | None:
    """The title from the document information, which broken files may not have."""
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception:
        return None
    return str(title) if title else None


def _parse_docx(data: bytes, charset: str | None, limits: ParseLimits) -> tuple[str, str | None]:
    """Body paragraphs and table cells in document order; headers and footers are left out."""
    import docx

    check_zip(data, limits)  # before python-docx inflates every part whole
    document = docx.Document(io.BytesIO(data))
    blocks: list[str] = []
    chars = 0
    for block in _docx_blocks(document):
        chars += len(block)
        if chars > limits.max_document_chars:
            raise too_much_text(limits.max_document_chars)
        blocks.append(block)
    title = document.core_properties.title or _docx_heading(document)
    return "\n\n".join(blocks), title


def _docx_blocks(container: Any) -> Iterator[str]:
    """Paragraph texts, and one line per table row with cells joined by ' | ', recursively."""
    from docx.table import Table

    for item in container.iter_inner_content():
        if isinstance(item, Table):
            rows: list[str] = []
            for row in item.rows:
                cells: list[str] = []
                seen: set[int] = set()
                for cell in row.cells:
                    # A merged cell appears once per grid column it spans.
                    if id(cell._tc) in seen:
                        continue
                    seen.add(id(cell._tc))
                    cell_text = " ".join(" ".join(_docx_blocks(cell)).split())
                    if cell_text:
                        cells.append(cell_text)
                if cells:
                    rows.append(" | ".join(cells))
            if rows:
                yield "\n".join(rows)
        elif item.text.strip():
            yield item.text


def _docx_heading(document: Any) -> str | None:
    """The first paragraph styled Title or Heading 1."""
    for paragraph in document.paragraphs:
        style = paragraph.style.name if paragraph.style is not None else ""
        if style in ("Title", "Heading 1") and paragraph.text.strip():
            return str(paragraph.text)
    return None


PARSERS: dict[str, Parser] = {
    TEXT: _parse_text,
    MARKDOWN: _parse_markdown,
    HTML: _parse_html,
    PDF: _parse_pdf,
    DOCX: _parse_docx,
}
LABELS = {TEXT: "text", MARKDOWN: "Markdown", HTML: "HTML", PDF: "a PDF", DOCX: "a DOCX"}

# --- HTML to text --------------------------------------------------------------------------------

# Not content: code, styling, navigation chrome, embedded media and form widgets.
_DROP = [
    "script", "style", "nav", "noscript", "template", "head", "svg", "canvas", "iframe",
    "object", "embed", "select",
]  # fmt: skip
_PARAGRAPH_TAGS = [
    "address", "article", "aside", "blockquote", "caption", "details", "dialog", "div", "dl",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
    "header", "hgroup", "hr", "main", "ol", "p", "pre", "section", "summary", "table", "ul",
]  # fmt: skip
_LINE_TAGS = ["li", "dt", "dd", "tr"]
_CELL_TAGS = ["td", "th"]
# Private-use characters mark structure while HTML's own whitespace is collapsed.
_PARA, _LINE, _CELL = "\ue000", "\ue001", "\ue002"
_MARKERS = str.maketrans("", "", _PARA + _LINE + _CELL)
_ANY_SPACE = re.compile(r"\s+")
_MARKER_RUN = re.compile(
    f"[ {_PARA}{_LINE}{_CELL}]*[{_PARA}{_LINE}{_CELL}][ {_PARA}{_LINE}{_CELL}]*"
)


def _html_to_text(markup: str) -> tuple[str, str | None]:
    """Visible text with paragraph and line breaks where the blocks were; and the title."""
    soup = BeautifulSoup(markup.translate(_MARKERS), "lxml")
    title = _text_of(soup.title) if soup.title is not None else None
    for tag in soup.find_all(_DROP):
        tag.decompose()
    if not title:
        title = _text_of(soup.find("h1"))
    for tag in soup.find_all("br"):
        tag.replace_with(_LINE)
    for pre in soup.find_all("pre"):
        for string in pre.find_all(string=True):
            string.replace_with(string.replace("\n", _LINE))
    for markers, names in ((_PARA, _PARAGRAPH_TAGS), (_LINE, _LINE_TAGS), (_CELL, _CELL_TAGS)):
        for tag in soup.find_all(names):
            tag.insert(0, markers)
            tag.append(markers)
    text = _ANY_SPACE.sub(" ", soup.get_text())
    return _MARKER_RUN.sub(_marker_break, text), title


def _marker_break(match: re.Match[str]) -> str:
    """The strongest break among adjacent markers wins."""
    run = match.group(0)
    if _PARA in run:
        return "\n\n"
    if _LINE in run:
        return "\n"
    return " | "


def _text_of(tag: Any) -> str | None:
    """A tag's text with whitespace collapsed, None when empty or absent."""
    if tag is None:
        return None
    return " ".join(tag.get_text(" ").split()) or None


def empty_document(kind: str | None = None) -> InvalidRequest:
    """400 for a file without text; a PDF without text is most likely a scan."""
    hint = " (a scanned PDF needs OCR, which is not supported)" if kind == PDF else ""
    return InvalidRequest(f"the document contains no text{hint}", code="empty_document")
