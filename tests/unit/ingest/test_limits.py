"""Zip-bomb checks before python-docx inflates a DOCX, and the per-file text limits."""

from __future__ import annotations

import io
import zipfile

import pytest

from rag_appliance.errors import InvalidRequest, PayloadTooLarge
from rag_appliance.ingest.limits import ParseLimits, check_zip
from rag_appliance.ingest.parsers import parse
from tests import docs_factory as f
from tests.ingest_bombs import docx_bomb

FACT = "The pier at Osterby is 214 metres long and was rebuilt in 1911."


def zip_of(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_a_real_docx_passes_and_parses() -> None:
    data = f.docx_bytes(FACT)
    check_zip(data, ParseLimits())
    assert FACT in parse(data, "a.docx").text


def test_a_dense_entry_is_refused_by_its_ratio() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        check_zip(zip_of({"word/document.xml": b" " * (8 * 1024 * 1024)}), ParseLimits())
    assert info.value.code == "file_too_complex" and "ingest.max_zip_ratio" in info.value.message


def test_declared_sizes_over_the_limit_are_refused() -> None:
    limits = ParseLimits(max_unzipped_bytes=4 * 1024 * 1024, max_zip_ratio=10**6)
    with pytest.raises(PayloadTooLarge) as info:
        check_zip(zip_of({"a.xml": b"x" * (5 * 1024 * 1024)}), limits)
    assert "ingest.max_unzipped_bytes" in info.value.message


def test_headers_that_lie_about_the_size_are_caught_while_inflating() -> None:
    bomb = docx_bomb(8, lying=True)  # claims 2,000 bytes for 8 MiB of XML
    with zipfile.ZipFile(io.BytesIO(bomb)) as archive:
        assert archive.getinfo("word/document.xml").file_size == 2000
    with pytest.raises(InvalidRequest) as info:
        parse(bomb, "bomb.docx")
    assert info.value.status == 400 and info.value.code == "unreadable_file"
    assert "sizes are false" in info.value.message


def test_many_small_entries_are_stopped_by_the_total() -> None:
    # Many small entries, each under the ratio floor: only the running total can stop them.
    entries = {f"part{i}.xml": b"y" * 900_000 for i in range(6)}
    limits = ParseLimits(max_unzipped_bytes=5_000_000, max_zip_ratio=10**6)
    with pytest.raises(PayloadTooLarge):
        check_zip(zip_of(entries), limits)


def test_too_many_entries() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        check_zip(zip_of({f"{i}.xml": b"<a/>" for i in range(30)}), ParseLimits(max_zip_entries=20))
    assert "ingest.max_zip_entries" in info.value.message


def test_pdf_pages_over_the_limit() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        parse(f.pdf_bytes(FACT, pages=3), "a.pdf", limits=ParseLimits(max_pdf_pages=2))
    assert info.value.code == "file_too_complex" and "ingest.max_pdf_pages" in info.value.message


@pytest.mark.parametrize("name", ["long.txt", "long.docx", "long.pdf"])
def test_text_over_max_document_chars(name: str) -> None:
    body = {
        "long.txt": lambda: (FACT + "\n\n").encode() * 20,
        "long.docx": lambda: f.docx_bytes(FACT * 5),
        "long.pdf": lambda: f.pdf_bytes(FACT, pages=3),
    }[name]()
    with pytest.raises(PayloadTooLarge) as info:
        parse(body, name, limits=ParseLimits(max_document_chars=150))
    assert info.value.status == 413 and info.value.code == "document_too_large"
