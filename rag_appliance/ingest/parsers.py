"""Uploaded bytes -> normalised plain text, for txt, Markdown, HTML, PDF and DOCX files."""

from __future__ import annotations

import codecs
import io
import logging
import re
import unicodedata
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, XMLParsedAsHTMLWarning
from bs4.dammit import EncodingDetector

from rag_appliance.errors import InvalidRequest, UnsupportedMediaType

log = logging.getLogger(__name__)

# bs4 warns when a short text looks like a URL or a file name, or when XHTML is parsed as HTML;
# both are normal for uploads and would only fill the server log.
warnings.filterwarnings("ignore", category=MarkupResemblesLocatorWarning)
warnings.filterwarnings("ignore", category=XMLParsedAsHTMLWarning)

TEXT = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

SUPPORTED_MEDIA_TYPES: frozenset[str] = frozenset({TEXT, MARKDOWN, HTML, PDF, DOCX})

_BY_EXTENSION: dict[str, str] = {
    ".txt": TEXT,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".html": HTML,
    ".htm": HTML,
    ".pdf": PDF,
    ".docx": DOCX,
}
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(_BY_EXTENSION)

# Names that clients and operating systems use for the same formats.
_ALIASES: dict[str, str] = {
    "text/x-markdown": MARKDOWN,
    "text/md": MARKDOWN,
    "application/xhtml+xml": HTML,
    "application/x-pdf": PDF,
}

# Types that say nothing about the content: fall through to the extension, then to sniffing.
# Some clients label a .docx (itself a zip) as a plain zip.
_GENERIC_TYPES = frozenset(
    {
        "application/octet-stream",
        "binary/octet-stream",
        "application/binary",
        "application/unknown",
        "application/zip",
        "application/x-zip-compressed",
        "application/x-download",
        "application/force-download",
    }
)

# A docx is a zip; its decompressed size is checked before python-docx inflates it whole.
_MAX_DOCX_UNCOMPRESSED = 512 * 1024 * 1024
_SNIFF_BYTES = 8192

_BOMS: tuple[tuple[bytes, str], ...] = (
    # UTF-32 first: its little-endian BOM begins with UTF-16's.
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# HTML's rule: a page that declares latin-1 or ascii is really windows-1252.
_DECLARED_AS_CP1252 = frozenset({"latin_1", "iso8859_1", "ascii"})


@dataclass(frozen=True)
class ParsedDocument:
    """The extracted text of one file, its canonical media type and title when it has one."""

    text: str
    media_type: str
    title: str | None = None


def parse(
    data: bytes, filename: str | None = None, media_type: str | None = None
) -> ParsedDocument:
    """Extract normalised text from a file's bytes; 415 for unknown types, 400 for bad files."""
    kind, charset = detect_media_type(data, filename, media_type)
    if not data.strip():
        raise _empty()
    parser = _PARSERS[kind]
    try:
        text, title = parser(data, charset)
    except InvalidRequest:
        raise
    except Exception as exc:  # parsers of untrusted files fail in many ways; none is ours
        log.info("could not parse %s upload: %s: %s", kind, type(exc).__name__, exc)
        raise InvalidRequest(
            f"the file could not be read as {_LABELS[kind]}: it is corrupt or not that format",
            code="unreadable_file",
        ) from exc
    text = normalize_text(text)
    if not text:
        raise _empty(kind)
    return ParsedDocument(text=text, media_type=kind, title=_clean_title(title))


def detect_media_type(
    data: bytes, filename: str | None = None, media_type: str | None = None
) -> tuple[str, str | None]:
    """The canonical media type (and declared charset) from the type, extension or content."""
    declared, charset = _split_media_type(media_type)
    if declared and declared not in _GENERIC_TYPES:
        kind = _ALIASES.get(declared, declared)
        if kind not in SUPPORTED_MEDIA_TYPES:
            raise _unsupported(f"media type '{declared}'")
        return kind, charset
    ext = extension(filename)
    if ext in _BY_EXTENSION:
        return _BY_EXTENSION[ext], charset
    sniffed = sniff(data)
    if sniffed is not None:
        return sniffed, charset
    if ext:
        raise _unsupported(f"extension '{ext}'")
    if not data:
        raise _empty()
    # Without any name or type, readable text is accepted as plain text.
    if _looks_like_text(data):
        return TEXT, charset
    raise _unsupported("content (the file type could not be recognised)")


def extension(filename: str | None) -> str:
    """The lower-case extension of a file name ('' if none); the name is never opened."""
    if not filename:
        return ""
    # Browsers on Windows may send the whole client path; only the last component matters.
    return PurePosixPath(filename.replace("\\", "/")).suffix.lower()


def sniff(data: bytes) -> str | None:
    """The media type from magic bytes: PDF, DOCX (zip with word/document.xml) or HTML."""
    head = data[:_SNIFF_BYTES]
    # The PDF spec lets the header sit anywhere in the first kilobyte.
    if b"%PDF-" in head[:1024]:
        return PDF
    if head.startswith(b"PK\x03\x04") and _is_docx(data):
        return DOCX
    start = _strip_bom(head).lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html")):
        return HTML
    if start.startswith((b"<!--", b"<?xml")) and re.search(rb"<html[\s>]", start[:1024]):
        return HTML
    return None


def decode_text(data: bytes, declared: str | None = None) -> str:
    """Bytes -> str: BOM, then the declared charset, UTF-8, a detected charset; never raises."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(codec, errors="replace")
    candidates: list[str] = []
    if declared and (name := _codec_name(declared)) is not None:
        candidates.append("cp1252" if name in _DECLARED_AS_CP1252 else name)
    candidates.append("utf-8")
    for candidate in candidates:
        try:
            return data.decode(candidate)
        except UnicodeDecodeError:
            continue
    detected = _detect_charset(data)
    if detected is not None:
        try:
            return data.decode(detected)
        except (UnicodeDecodeError, LookupError):
            pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        # Every byte is a latin-1 character: the last resort cannot fail.
        return data.decode("latin-1")


# Invisible characters that only get in the way of search: C0/C1 controls, zero-width space,
# word joiner, BOM and soft hyphen. ZWJ/ZWNJ stay: they shape Persian, Indic scripts and emoji.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\u200b\u2060\ufeff\u00ad]")
_LINE_BREAKS = str.maketrans({"\r": "\n", "\x0b": "\n", "\u2028": "\n", "\x85": "\n"})
_PAGE_BREAKS = str.maketrans({"\x0c": "\n\n", "\u2029": "\n\n"})
_HSPACE = re.compile(r"[^\S\n]+")
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFC, no control characters, single spaces, at most one blank line between paragraphs."""
    text = text.replace("\r\n", "\n").translate(_LINE_BREAKS).translate(_PAGE_BREAKS)
    text = unicodedata.normalize("NFC", text)
    # \x85 (NEL) is in the C1 range removed below, so line breaks are translated first.
    text = _CONTROL.sub("", text)
    text = _HSPACE.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


# --- formats -------------------------------------------------------------------------------------


def _parse_text(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """Plain text has no title."""
    return decode_text(data, charset), None


_FRONT_MATTER = re.compile(r"\A---[ \t]*\n.*?\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)


def _parse_markdown(data: bytes, charset: str | None) -> tuple[str, str | None]:
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


def _parse_html(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """Decode by BOM, meta charset or detection, then extract the visible text."""
    declared = charset or EncodingDetector.find_declared_encoding(data[:16384], is_html=True)
    return _html_to_text(decode_text(data, declared))


def _parse_pdf(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """Each page's text with pypdf, pages separated by a blank line."""
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
    pages: list[str] = []
    failed = 0
    for number, page in enumerate(reader.pages, start=1):
        try:
            pages.append(page.extract_text())
        except Exception as exc:  # one broken page should not lose the rest of the document
            failed += 1
            log.warning("PDF page %d could not be read: %s: %s", number, type(exc).__name__, exc)
    if failed and not pages:
        raise InvalidRequest("no page of the PDF could be read", code="unreadable_file")
    text = "\n\n".join(pages)
    if not text.strip():
        raise _empty(PDF)
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


def _parse_docx(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """Body paragraphs and table cells in document order; headers and footers are left out."""
    import docx

    _check_zip_size(data)
    document = docx.Document(io.BytesIO(data))
    blocks = list(_docx_blocks(document))
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


def _check_zip_size(data: bytes) -> None:
    """Refuse a zip whose members would inflate past the limit (a zip bomb)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        total = sum(info.file_size for info in archive.infolist())
    if total > _MAX_DOCX_UNCOMPRESSED:
        raise InvalidRequest("the DOCX file is too large once decompressed", code="unreadable_file")


_PARSERS: dict[str, Callable[[bytes, str | None], tuple[str, str | None]]] = {
    TEXT: _parse_text,
    MARKDOWN: _parse_markdown,
    HTML: _parse_html,
    PDF: _parse_pdf,
    DOCX: _parse_docx,
}
_LABELS = {TEXT: "text", MARKDOWN: "Markdown", HTML: "HTML", PDF: "a PDF", DOCX: "a DOCX"}


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


# --- helpers -------------------------------------------------------------------------------------


def _split_media_type(media_type: str | None) -> tuple[str, str | None]:
    """'Text/HTML; charset=UTF-8' -> ('text/html', 'UTF-8')."""
    if not media_type:
        return "", None
    main, _, params = media_type.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'")
    return main.strip().lower(), charset


def _codec_name(label: str) -> str | None:
    """Python's name for a charset label, None when it is not one."""
    try:
        return codecs.lookup(label).name.replace("-", "_")
    except (LookupError, ValueError):
        return None


def _detect_charset(data: bytes) -> str | None:
    """A charset guess from charset-normalizer when installed, preferring windows-1252 on ties."""
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - it comes with requests
        return None
    matches = list(from_bytes(data))
    if not matches:
        return None
    best = matches[0]
    # Short Western text fits several Latin code pages equally well, and the detector's first
    # pick (often cp1250) then garbles accents that windows-1252 reads right.
    for match in matches:
        if (
            match.encoding == "cp1252"
            and match.chaos <= best.chaos + 0.01
            and match.coherence >= best.coherence - 0.05
        ):
            return "cp1252"
    return str(best.encoding)


def _strip_bom(data: bytes) -> bytes:
    """The bytes without a leading UTF-8 BOM."""
    return data[len(codecs.BOM_UTF8) :] if data.startswith(codecs.BOM_UTF8) else data


def _is_docx(data: bytes) -> bool:
    """A zip archive holding word/document.xml."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return "word/document.xml" in archive.namelist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return False


def _looks_like_text(data: bytes) -> bool:
    """Text has a BOM, or no NUL bytes and hardly any other control bytes."""
    head = data[:_SNIFF_BYTES]
    if any(head.startswith(bom) for bom, _ in _BOMS):
        return True
    if b"\x00" in head:
        return False
    controls = sum(1 for byte in head if byte < 0x20 and byte not in b"\t\n\r\x0c")
    return controls <= len(head) // 100


def _clean_title(title: str | None) -> str | None:
    """A one-line title, None when empty."""
    if not title:
        return None
    return " ".join(normalize_text(title).split()) or None


def _empty(kind: str | None = None) -> InvalidRequest:
    """400 for a file without text; a PDF without text is most likely a scan."""
    hint = " (a scanned PDF needs OCR, which is not supported)" if kind == PDF else ""
    return InvalidRequest(f"the document contains no text{hint}", code="empty_document")


def _unsupported(what: str) -> UnsupportedMediaType:
    """415 naming what was refused and what is supported."""
    extensions = ", ".join(sorted(SUPPORTED_EXTENSIONS))
    types = ", ".join(sorted(SUPPORTED_MEDIA_TYPES))
    return UnsupportedMediaType(
        f"unsupported file type: {what}; supported extensions: {extensions} (media types: {types})"
    )
