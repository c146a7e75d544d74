"""Uploaded bytes -> normalised plain text, for txt, Markdown, HTML, PDF and DOCX files.

The media type comes from the declared type, the file name or the content; the parser for each
format is in `formats`, decoding and normalisation in `text`.
"""

from __future__ import annotations

import codecs
import io
import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

from rag_appliance.errors import AppError, InvalidRequest, UnsupportedMediaType
from rag_appliance.ingest.formats import (
    DOCX,
    HTML,
    LABELS,
    MARKDOWN,
    PARSERS,
    PDF,
    TEXT,
    empty_document,
)
from rag_appliance.ingest.limits import ParseLimits, too_much_text
from rag_appliance.ingest.text import BOMS, decode_text, normalize_text

__all__ = [
    "DOCX",
    "HTML",
    "MARKDOWN",
    "PDF",
    "SUPPORTED_EXTENSIONS",
    "SUPPORTED_MEDIA_TYPES",
    "TEXT",
    "ParsedDocument",
    "decode_text",
    "detect_media_type",
    "extension",
    "normalize_text",
    "parse",
    "sniff",
]

log = logging.getLogger(__name__)

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

_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class ParsedDocument:
    """The extracted text of one file, its canonical media type and title when it has one."""

    text: str
    media_type: str
    title: str | None = None


def parse(
    data: bytes,
    filename: str | None = None,
    media_type: str | None = None,
    limits: ParseLimits | None = None,
) -> ParsedDocument:
    """Extract normalised text from a file's bytes; 415 for unknown types, 400 for bad files,
    413 past the limits (run untrusted files through `sandbox.ParseSandbox`, not directly)."""
    limits = limits or ParseLimits()
    kind, charset = detect_media_type(data, filename, media_type)
    if not data.strip():
        raise empty_document()
    parser = PARSERS[kind]
    try:
        text, title = parser(data, charset, limits)
    except (AppError, MemoryError):
        raise
    except Exception as exc:  # parsers of untrusted files fail in many ways; none is ours
        log.info("could not parse %s upload: %s: %s", kind, type(exc).__name__, exc)
        raise InvalidRequest(
            f"the file could not be read as {LABELS[kind]}: it is corrupt or not that format",
            code="unreadable_file",
        ) from exc
    if len(text) > limits.max_document_chars:  # normalising only shortens: refuse it unread
        raise too_much_text(limits.max_document_chars)
    text = normalize_text(text)
    if not text:
        raise empty_document(kind)
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
        _check_text_content(kind, data, f"declared as {declared}")
        return kind, charset
    ext = extension(filename)
    if ext in _BY_EXTENSION:
        kind = _BY_EXTENSION[ext]
        _check_text_content(kind, data, f"named {ext}")
        return kind, charset
    sniffed = sniff(data)
    if sniffed is not None:
        return sniffed, charset
    if ext:
        raise _unsupported(f"extension '{ext}'")
    if not data:
        raise empty_document()
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


def binary_content(data: bytes) -> str | None:
    """What binary content is (e.g. 'a DOCX document'), None when it reads as text."""
    head = data[:_SNIFF_BYTES]
    if any(head.startswith(bom) for bom, _ in BOMS):
        return None
    if head.lstrip().startswith(b"%PDF-"):
        return "a PDF document"
    if head.startswith(b"PK\x03\x04") and _is_docx(data):
        return "a DOCX document"
    import filetype

    found = filetype.guess(head)
    if found is not None:
        return f"{found.mime} (.{found.extension})"
    if b"\x00" in head or _controls(head) > len(head) // 8:
        return "binary data (NUL or control bytes), not text"
    return None


# --- helpers -------------------------------------------------------------------------------------


_TEXT_KINDS = frozenset({TEXT, MARKDOWN, HTML})


def _check_text_content(kind: str, data: bytes, said: str) -> None:
    """415 when a file said to be text is binary: its declared type cannot smuggle bytes in."""
    if kind not in _TEXT_KINDS:
        return
    found = binary_content(data)
    if found is not None:
        raise UnsupportedMediaType(
            f"the file is {said} ({LABELS[kind]}) but its content is {found}; send it under "
            "its own type or extension",
            code="content_type_mismatch",
        )


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
    if any(head.startswith(bom) for bom, _ in BOMS):
        return True
    if b"\x00" in head:
        return False
    return _controls(head) <= len(head) // 100


def _controls(head: bytes) -> int:
    """C0 control bytes other than whitespace (a log's ANSI escapes count: so the margin)."""
    return sum(1 for byte in head if byte < 0x20 and byte not in b"\t\n\r\x0c")


def _clean_title(title: str | None) -> str | None:
    """A one-line title, None when empty."""
    if not title:
        return None
    return " ".join(normalize_text(title).split()) or None


def _unsupported(what: str) -> UnsupportedMediaType:
    """415 naming what was refused and what is supported."""
    extensions = ", ".join(sorted(SUPPORTED_EXTENSIONS))
    types = ", ".join(sorted(SUPPORTED_MEDIA_TYPES))
    return UnsupportedMediaType(
        f"unsupported file type: {what}; supported extensions: {extensions} (media types: {types})"
    )
