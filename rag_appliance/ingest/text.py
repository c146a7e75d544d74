"""Bytes -> str for uploaded text: BOMs, declared and detected charsets; and text normalisation."""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Iterator

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


# A longer text is normalised a segment at a time: whole, each step below copies it, and
# re.sub holds a piece per match (measured: a 40 MB text took its parse worker to 811 MB).
SEGMENT_CHARS = 1 << 20
# Where a segment may end: after a line break, before an ASCII letter or digit. No step below
# looks across such a point (no space run, no newline run, no NFC composition spans it).
_SAFE_CUT = re.compile(r"\n(?=[A-Za-z0-9])")


def normalize_text(text: str, segment_chars: int = SEGMENT_CHARS) -> str:
    """NFC, no control characters, single spaces, at most one blank line between paragraphs."""
    if len(text) <= segment_chars:
        return _normalize(text).strip()
    parts = [_normalize(part) for part in _segments(text, segment_chars)]
    parts[0], parts[-1] = parts[0].lstrip(), parts[-1].rstrip()
    return "".join(parts).strip()  # strip: a part normalised to nothing but blanks


def _normalize(text: str) -> str:
    text = text.replace("\r\n", "\n").translate(_LINE_BREAKS).translate(_PAGE_BREAKS)
    text = unicodedata.normalize("NFC", text)
    # \x85 (NEL) is in the C1 range removed below, so line breaks are translated first.
    text = _CONTROL.sub("", text)
    text = _HSPACE.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text)


def _segments(text: str, size: int) -> Iterator[str]:
    """Slices of about `size` characters, each ending at a safe cut (the last where it can)."""
    start, n = 0, len(text)
    while n - start > size:
        cut = _last_safe_cut(text, start + size // 2, start + size)
        if cut is None:  # none in the window: the next one after it, or the rest whole
            found = _SAFE_CUT.search(text, start + size)
            if found is None:
                break
            cut = found.end()
        yield text[start:cut]
        start = cut
    yield text[start:]


def _last_safe_cut(text: str, low: int, high: int) -> int | None:
    """The last position in (low, high] just after a newline that a letter or digit follows."""
    pos = text.rfind("\n", low, high)
    while pos >= low:
        if pos + 1 < len(text) and text[pos + 1].isascii() and text[pos + 1].isalnum():
            return pos + 1
        pos = text.rfind("\n", low, pos)
    return None


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
