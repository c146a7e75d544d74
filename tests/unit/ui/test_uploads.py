"""The UI's uploads: under data_dir, size-limited per file, deleted once indexed, leftovers swept
at start, and Gradio's upload route refused to cross-site browsers when no keys are set."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rag_appliance.app import create_app
from rag_appliance.ui import uploads
from rag_appliance.ui.actions import Actions
from tests.conftest import make_services, make_settings
from tests.fakes import FakeEncoder
from tests.unit.ui.conftest import Rig

UPLOAD = "/ui/gradio_api/upload"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Gradio's upload folder pointed at data_dir/ui-uploads (restored after the test)."""
    monkeypatch.setenv(uploads.ENV, "unset")  # monkeypatch restores whatever was there
    return uploads.prepare(tmp_path / "data")


def uploaded(root: Path, name: str, data: bytes) -> Path:
    """A file where Gradio puts an upload: root/<sha>/<name>."""
    folder = root / f"sha-{abs(hash((name, data)))}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def files_in(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*"))


def test_readable_sizes() -> None:
    sizes = [512, 2048, int(3.44 * 2**20), 3 * 2**30, 5 * 2**40]
    assert [uploads.readable_size(n) for n in sizes] == [
        "512 bytes",
        "2.0 KiB",
        "3.4 MiB",
        "3.0 GiB",
        "5120.0 GiB",
    ]


def test_prepare_sweeps_leftovers_and_points_gradio_there(root: Path, tmp_path: Path) -> None:
    left = uploaded(root, "crashed.pdf", b"%PDF-1.4 half")
    again = uploads.prepare(tmp_path / "data")
    assert again == root == (tmp_path / "data" / "ui-uploads").resolve()
    assert not left.exists() and root.is_dir() and list(root.iterdir()) == []
    assert os.environ[uploads.ENV] == str(root) and uploads.current_dir() == root


def test_discard_deletes_uploads_and_nothing_outside(root: Path, tmp_path: Path) -> None:
    mine = uploaded(root, "a.txt", b"a")
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    link = uploaded(root, "b.txt", b"b")
    link.unlink()
    link.symlink_to(outside)  # a link in the folder: the link goes, never its target
    assert uploads.discard([mine, link, outside, root], root) == 2
    assert not mine.exists() and not link.is_symlink() and outside.read_text() == "keep me"
    assert list(root.iterdir()) == []  # the per-upload folders went with their files


def test_read_refuses_each_file_over_the_limit(root: Path) -> None:
    small = uploaded(root, "small.txt", b"fine")
    big = uploaded(root, "big.txt", b"x" * 3 * 2**20)
    refused, blobs = uploads.read([big, small], 2**20)
    assert list(blobs) == [1] and blobs[1].data == b"fine" and blobs[1].name == "small.txt"
    error = refused[0].error
    assert refused[0].filename == "big.txt" and error is not None
    assert (error.status, error.param) == (413, "files")
    assert error.message == "the file is 3.0 MiB; uploads are limited to 1.0 MiB" + (
        " (ingest.max_upload_bytes)"
    )


async def test_upload_deletes_the_files_whatever_happened(rig: Rig, root: Path) -> None:
    pipeline = rig.services.require_pipeline()
    pipeline.settings = pipeline.settings.model_copy(update={"max_upload_bytes": 1024})
    good = uploaded(root, "goats.md", b"# Goats\n\nGoats climb the cliffs of the island.")
    big = uploaded(root, "huge.txt", b"words " * 400)  # 2400 bytes: over the 1 KiB limit
    actions = Actions(lambda: rig.services)
    with pytest.warns(UserWarning, match="1 of 2 files could not be indexed"):
        rows, box = await actions.upload([str(good), str(big)], "kb")
    assert rows[0][:3] == ["goats.md", "indexed", 1]
    assert rows[1] == [
        "huge.txt",
        "error",
        0,
        "the file is 2.3 KiB; uploads are limited to 1.0 KiB (ingest.max_upload_bytes)",
    ]
    assert box is None  # the files are gone, so the box is cleared
    assert not good.exists() and not big.exists() and files_in(root) == []
    listed, _ = await rig.services.require_collections().documents("kb", 100)
    assert "goats.md" in {d.id for d in listed} and "huge.txt" not in {d.id for d in listed}


async def test_a_refusal_before_reading_keeps_the_files(rig: Rig, root: Path) -> None:
    kept = uploaded(root, "notes.txt", b"Llamas hum softly.")
    actions = Actions(lambda: rig.services)
    with pytest.warns(UserWarning, match="choose or create a collection"):
        rows, box = await actions.upload([str(kept)], None)
    assert rows == [] and box["__type__"] == "update" and kept.exists()  # press again later


@pytest.fixture
def client(tmp_path: Path, tokenizer: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv(uploads.ENV, "unset")
    data = tmp_path / "data"
    (data / "ui-uploads" / "old").mkdir(parents=True)
    (data / "ui-uploads" / "old" / "left.txt").write_text("from a crash")
    settings = make_settings(generation={"enabled": False}, ingest={"max_upload_bytes": 4096})
    settings = settings.model_copy(update={"data_dir": data})
    app = create_app(settings, make_services(settings, FakeEncoder(), tokenizer=tokenizer))
    with TestClient(app) as c:
        yield c


def test_gradio_writes_uploads_under_data_dir_within_the_limit(
    client: TestClient, tmp_path: Path
) -> None:
    root = (tmp_path / "data" / "ui-uploads").resolve()
    assert not (root / "old").exists()  # swept when the UI was mounted
    r = client.post(UPLOAD, files=[("files", ("notes.txt", b"Goats graze.", "text/plain"))])
    assert r.status_code == 200, r.text
    [path] = r.json()
    assert Path(path).is_relative_to(root) and Path(path).read_bytes() == b"Goats graze."
    r = client.post(UPLOAD, files=[("files", ("big.txt", b"x" * 8192, "text/plain"))])
    assert r.status_code == 413
    assert [p.name for p in root.rglob("*") if p.is_file()] == ["notes.txt"]


def test_gradio_upload_route_refuses_cross_site_browsers_without_keys(
    client: TestClient, tmp_path: Path
) -> None:
    headers = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    files = [("files", ("x.txt", b"planted", "text/plain"))]
    r = client.post(UPLOAD, files=files, headers=headers)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "cross_origin_request"
    root = tmp_path / "data" / "ui-uploads"
    assert not [p for p in root.rglob("*") if p.is_file()]  # nothing was written
