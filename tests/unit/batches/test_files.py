"""The file store: uploads in whole or not at all, ids that cannot be paths, idempotent adopt."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from rag_appliance.batches.files import FileStore, public
from rag_appliance.errors import NotFound, PayloadTooLarge


def test_save_commit_read_and_delete(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "files")
    record, tmp = store.save(
        io.BytesIO(b"abc\n"), filename="a.jsonl", purpose="batch", owner=None, max_bytes=10
    )
    with pytest.raises(NotFound):  # not visible before commit
        store.record(record["id"])
    store.commit(record, tmp)
    assert store.path(record["id"]).read_bytes() == b"abc\n"
    assert public(store.record(record["id"]))["bytes"] == 4
    assert [r["id"] for r in store.records()] == [record["id"]]
    store.delete(record["id"])
    with pytest.raises(NotFound):
        store.record(record["id"])


def test_an_upload_over_the_limit_leaves_nothing(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    with pytest.raises(PayloadTooLarge):
        store.save(io.BytesIO(b"x" * 11), filename="a", purpose="batch", owner=None, max_bytes=10)
    assert list(tmp_path.iterdir()) == []


def test_leftover_parts_are_swept_and_odd_ids_are_404(tmp_path: Path) -> None:
    (tmp_path / "file-0123.part").write_bytes(b"half")
    (tmp_path / "secret.json").write_text("{}")
    store = FileStore(tmp_path)
    assert not (tmp_path / "file-0123.part").exists()
    for bad in ("secret", "../secret", "file-" + "0" * 23):
        with pytest.raises(NotFound):
            store.record(bad)


def test_adopt_is_safe_to_repeat(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "files")
    src = tmp_path / "out.jsonl"
    src.write_bytes(b"{}\n")
    fid = "file-" + "1" * 24
    first = store.adopt(src, fid, filename="o", purpose="batch_output", owner=None)
    again = store.adopt(src, fid, filename="o", purpose="batch_output", owner=None)
    assert first == again and first["bytes"] == 3
    assert store.path(fid).read_bytes() == b"{}\n"
