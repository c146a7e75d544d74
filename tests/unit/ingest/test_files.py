"""safe_name (the document-id rule) and index_files, on the fake encoder and a real store."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rag_appliance.errors import Conflict, InvalidRequest
from rag_appliance.ingest import files
from rag_appliance.ingest.files import FileBlob, FileOutcome, index_files, safe_name
from rag_appliance.ingest.parsers import ParsedDocument
from rag_appliance.services import Services
from rag_appliance.store.base import Provenance
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests import docs_factory
from tests.conftest import make_services, make_settings
from tests.fakes import FakeEncoder

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("café notes.txt", "café notes.txt"),
        # Windows: a full client path (old browsers send one) keeps its base name only.
        ("C:\\Users\\ada\\Documents\\report.pdf", "report.pdf"),
        ("D:notes.txt", "notes.txt"),
        ("\\\\server\\share\\notes.txt", "notes.txt"),
        # A relative path names a file within a folder, whichever separator it uses.
        ("docs\\guide\\intro.md", "docs/guide/intro.md"),
        ("docs/guide/intro.md", "docs/guide/intro.md"),
        ("sub/./b.pdf", "sub/b.pdf"),
        ("a//b.txt", "a/b.txt"),
        ("./a.txt", "a.txt"),
        # POSIX: absolute paths and paths that climb keep their base name only.
        ("/etc/passwd", "passwd"),
        ("../../etc/passwd.txt", "passwd.txt"),
        ("a/../b.txt", "b.txt"),
        # NUL and other control characters go; surrounding blanks go.
        ("a\x00b.txt", "ab.txt"),
        ("new\nline\t.txt", "newline.txt"),
        ("  padded .txt  ", "padded .txt"),
        # Nothing usable left: a fixed name.
        ("", "upload"),
        (None, "upload"),
        ("   ", "upload"),
        ("\x00", "upload"),
        ("/", "upload"),
        (".", "upload"),
        ("..", "upload"),
        ("C:\\", "upload"),
        # Undecodable bytes of a file-system name (surrogateescape) and lone surrogates.
        ("caf\udce9.txt", "caf\ufffd.txt"),
        ("x\ud800y.txt", "x\ufffdy.txt"),
    ],
)
def test_safe_name(given: str | None, expected: str) -> None:
    assert safe_name(given) == expected


def test_safe_name_always_gives_a_storable_relative_name() -> None:
    rng = random.Random(7)
    alphabet = ["a", "b", ".", "..", "/", "\\", ":", "C:", " ", "\x00", "\x7f", "\udcff", "é"]
    for _ in range(2000):
        name = safe_name("".join(rng.choices(alphabet, k=rng.randint(0, 12))))
        name.encode("utf-8")  # no surrogates left
        parts = name.split("/")
        assert name and not name.startswith("/") and "\\" not in name
        assert all(p and p.strip() == p and p not in (".", "..") for p in parts), name
        assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in name), name
        assert safe_name(name) == name  # idempotent: an id given back as a name stays itself


@pytest.fixture
async def services(tokenizer: Any, tmp_path: Path) -> AsyncIterator[Services]:
    settings = make_settings(generation={"enabled": False})
    store = QdrantEdgeStore(tmp_path / "db")
    services = make_services(settings, FakeEncoder(), store, tokenizer=tokenizer)
    await services.start()
    yield services
    await services.stop()


def mixed_files() -> list[FileBlob]:
    return [
        FileBlob("notes.txt", b"Plain notes about the goats on Varn Island.\n"),
        FileBlob("C:\\Users\\ada\\guide.md", b"# The Guide\n\nLlamas eat hay in winter.\n"),
        FileBlob("broken.pdf", docs_factory.corrupt_pdf_bytes(), "application/pdf"),
        FileBlob("photo.png", PNG, "image/png"),
        FileBlob("sub/page.html", docs_factory.html_bytes("The clock was built in 1741.")),
    ]


async def test_one_outcome_per_file_in_order(services: Services) -> None:
    blobs = mixed_files()
    heard: list[FileOutcome] = []
    pipeline = services.require_pipeline()
    common = {"team": "ops", "filename": "overridden by the file's own"}
    outcomes = await index_files(pipeline, "kb", blobs, common, progress=heard.append)
    assert [o.filename for o in outcomes] == [
        "notes.txt",
        "guide.md",
        "broken.pdf",
        "photo.png",
        "sub/page.html",
    ]
    assert [o.status for o in outcomes] == ["indexed", "indexed", "error", "error", "indexed"]
    assert sorted(heard, key=lambda o: o.filename) == sorted(outcomes, key=lambda o: o.filename)
    for outcome in outcomes:
        if outcome.error is None:
            assert outcome.doc_id == outcome.filename and outcome.chunks >= 1
        else:
            assert outcome.doc_id is None and outcome.chunks == 0
    broken, photo = outcomes[2].error, outcomes[3].error
    assert broken is not None and (broken.status, broken.code) == (400, "unreadable_file")
    assert photo is not None and (photo.status, photo.code) == (415, "unsupported_media_type")

    listed, _ = await services.require_collections().documents("kb", 100)
    docs = {d.id: d for d in listed}
    assert set(docs) == {"notes.txt", "guide.md", "sub/page.html"}
    assert docs["guide.md"].source == "guide.md"
    assert docs["guide.md"].metadata == {
        "team": "ops",
        "filename": "guide.md",
        "media_type": "text/markdown",
        "title": "The Guide",
    }
    assert docs["sub/page.html"].source == "sub/page.html"
    assert docs["sub/page.html"].metadata["filename"] == "page.html"
    assert docs["sub/page.html"].metadata["title"] == "Test Page"
    assert "title" not in docs["notes.txt"].metadata

    # The files' bytes were handed to the parse, not kept through the indexing.
    assert all(blob.data == b"" for blob in blobs)
    again = await index_files(pipeline, "kb", mixed_files(), common)
    assert [o.status for o in again] == ["unchanged", "unchanged", "error", "error", "unchanged"]


async def test_parsed_files_are_indexed_together_in_batches(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = services.require_pipeline()
    calls: list[int] = []
    real = pipeline.index

    async def spy(collection: str, documents: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(documents))
        return await real(collection, documents, *args, **kwargs)

    monkeypatch.setattr(pipeline, "index", spy)
    monkeypatch.setattr(files, "FILES_PER_BATCH", 3)
    blobs = [
        FileBlob(f"f{i}.txt", f"File number {i} talks about rivers.".encode()) for i in range(7)
    ]
    blobs.insert(4, FileBlob("empty.txt", b"   \n"))
    outcomes = await index_files(pipeline, "kb", blobs)
    assert calls == [3, 2, 2]  # the empty file fails alone, in its batch
    assert [o.status for o in outcomes].count("indexed") == 7
    assert outcomes[4].error is not None and outcomes[4].error.code == "empty_document"


async def test_same_name_twice_is_one_document(services: Services) -> None:
    pipeline = services.require_pipeline()
    blobs = [FileBlob("a.txt", b"First version."), FileBlob("dir/../a.txt", b"Second version.")]
    first, second = await index_files(pipeline, "kb", blobs)
    assert first == second and first.doc_id == "a.txt" and first.status == "indexed"
    listed, _ = await services.require_collections().documents("kb", 10)
    assert [d.id for d in listed] == ["a.txt"]


async def test_collection_errors_fail_the_call_before_parsing(services: Services) -> None:
    pipeline = services.require_pipeline()
    store = services.store
    assert store is not None
    good = [FileBlob("a.txt", b"Some text.")]
    with pytest.raises(InvalidRequest) as bad_name:
        await index_files(pipeline, "../etc", good)
    assert bad_name.value.param == "collection"
    store.create_collection("legacy", Provenance(model="other-model", dimension=768))
    with pytest.raises(Conflict):
        await index_files(pipeline, "legacy", good)
    assert store.count("legacy") == 0
    # Only bad files: per-file errors, and no collection is left behind.
    outcomes = await index_files(pipeline, "fresh", [FileBlob("x.png", PNG)])
    assert [o.status for o in outcomes] == ["error"]
    assert "fresh" not in [c.name for c in store.list_collections()]


class CountingSandbox:
    """A fake parse sandbox: each parse takes a moment; records how many ran at once."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.running = 0
        self.most = 0

    async def parse(self, data: bytes, filename: str | None, media_type: str | None) -> Any:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(0.05)
        finally:
            self.running -= 1
        if data == b"bad":
            raise InvalidRequest("unreadable", param="files", code="unreadable_file")
        return ParsedDocument(text=data.decode(), media_type="text/plain", title=None)

    def close(self) -> None:
        """Nothing to stop."""


async def test_files_are_parsed_side_by_side_by_the_sandbox_workers(services: Services) -> None:
    pipeline = services.require_pipeline()
    fake = CountingSandbox(workers=3)
    pipeline.sandbox = fake  # type: ignore[assignment]
    blobs = [
        FileBlob(f"f{i}.txt", b"bad" if i == 4 else f"File {i} text.".encode()) for i in range(7)
    ]
    outcomes = await index_files(pipeline, "kb", blobs)
    assert fake.most == 3  # as many at once as workers, never more
    assert [o.filename for o in outcomes] == [f"f{i}.txt" for i in range(7)]
    assert [o.status for o in outcomes] == ["indexed"] * 4 + ["error"] + ["indexed"] * 2
