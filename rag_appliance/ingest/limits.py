"""Parse limits as plain values (they travel to the parse workers), and the zip-bomb checks."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rag_appliance.errors import InvalidRequest, PayloadTooLarge

if TYPE_CHECKING:  # the parse workers import this module: they need no settings machinery
    from rag_appliance.settings import IngestSettings

# Entries this small cannot make a bomb whatever their ratio (a tiny styles.xml of spaces).
_RATIO_FLOOR = 1024 * 1024
_BLOCK = 64 * 1024


@dataclass(frozen=True)
class ParseLimits:
    """What one file's parse may use: inflated bytes, zip entries, PDF pages, text."""

    max_unzipped_bytes: int = 128 * 1024 * 1024
    max_zip_entries: int = 2000
    max_zip_ratio: int = 100
    max_pdf_pages: int = 2000
    max_document_chars: int = 64 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> ParseLimits:
        """The limits configured under `ingest`."""
        return cls(
            max_unzipped_bytes=settings.max_unzipped_bytes,
            max_zip_entries=settings.max_zip_entries,
            max_zip_ratio=settings.max_zip_ratio,
            max_pdf_pages=settings.max_pdf_pages,
            max_document_chars=settings.max_document_chars,
        )


def too_complex(message: str) -> PayloadTooLarge:
    """413 for a file that would take more than its limits to parse."""
    return PayloadTooLarge(message, code="file_too_complex")


def too_much_text(limit: int) -> PayloadTooLarge:
    """413 for a file whose text is over `max_document_chars`."""
    return PayloadTooLarge(
        f"the document's text is longer than {limit:,} characters (ingest.max_document_chars)",
        code="document_too_large",
    )


def check_zip(data: bytes, limits: ParseLimits, label: str = "DOCX") -> None:
    """Refuse a zip bomb before a library inflates it: entries, declared and actual sizes.

    The declared sizes are checked first (cheap), then every entry is inflated as a stream and
    counted, so headers that lie cannot get past the byte cap; a corrupt entry (CRC) is a 400.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise _corrupt(label) from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_zip_entries:
            raise too_complex(
                f"the {label} file has {len(infos):,} zip entries; at most "
                f"{limits.max_zip_entries:,} are read (ingest.max_zip_entries)"
            )
        declared = sum(info.file_size for info in infos)
        if declared > limits.max_unzipped_bytes:
            raise _too_big(label, limits)
        for info in infos:
            if _ratio_over(info.file_size, info.compress_size, limits):
                raise _too_dense(label, info.filename, limits)
        total = 0
        for info in infos:
            total = _inflate(archive, info, total, limits, label)


def _inflate(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, total: int, limits: ParseLimits, label: str
) -> int:
    """Inflate one entry in blocks, discarding them; the running total of inflated bytes."""
    inflated = 0
    try:
        with archive.open(info) as member:
            while block := member.read(_BLOCK):
                inflated += len(block)
                if total + inflated > limits.max_unzipped_bytes:
                    raise _too_big(label, limits)
                if _ratio_over(inflated, info.compress_size, limits):
                    raise _too_dense(label, info.filename, limits)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        # A CRC mismatch is how a header claiming fewer bytes than the data holds shows up.
        raise _corrupt(label) from exc
    except (OSError, ValueError) as exc:  # zlib errors on a damaged stream
        raise _corrupt(label) from exc
    return total + inflated


def _ratio_over(size: int, compressed: int, limits: ParseLimits) -> bool:
    return size > _RATIO_FLOOR and size > limits.max_zip_ratio * max(compressed, 1)


def _too_big(label: str, limits: ParseLimits) -> PayloadTooLarge:
    return too_complex(
        f"the {label} file inflates to more than {limits.max_unzipped_bytes:,} bytes "
        "(ingest.max_unzipped_bytes): refused as a possible zip bomb"
    )


def _too_dense(label: str, name: str, limits: ParseLimits) -> PayloadTooLarge:
    return too_complex(
        f"the {label} file's entry {name!r} inflates more than {limits.max_zip_ratio}x "
        "(ingest.max_zip_ratio): refused as a possible zip bomb"
    )


def _corrupt(label: str) -> InvalidRequest:
    return InvalidRequest(
        f"the {label} file's zip is corrupt or its entry sizes are false", code="unreadable_file"
    )
