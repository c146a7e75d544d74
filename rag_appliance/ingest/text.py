"""Bytes -> str for uploaded text: BOMs, declared and detected charsets; and text normalisation."""

from __future__ import annotations

import codecs
import re
import unicodedata

BOMS: tuple[tuple[bytes, str], ...] = (
    # UTF-32 first: its little-endian BOM begins with UTF-16's.
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# HTML's rule: a page that declares latin-1 or ascii is really windows-1252.
_DECLARED_AS_CP1252 = frozenset({"latin_1", "iso8859_1", "ascii"})


def decode_text(data: bytes, declared: str | None = None) -> str:
    """Bytes -> str: BOM, then the declared charset, UTF-8, a detected charset; never raises."""
    for bom, codec in BOMS:
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
