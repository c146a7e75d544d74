"""Remote indexing: the skip-by-hash decision, and a run against a fake appliance."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag_appliance.remote.client import RemoteClient
from rag_appliance.remote.index import HASH_KEY, LocalFile, index_remote, plan, report


def _file(doc_id: str, sha: str = "aa") -> LocalFile:
    return LocalFile(Path(doc_id), doc_id, doc_id, sha, 10)


def test_plan_skips_only_documents_with_the_same_hash_and_metadata() -> None:
    files = [_file("same.txt"), _file("changed.txt", "bb"), _file("new.txt"), _file("meta.txt")]
    stored: dict[str, dict[str, Any]] = {
        "same.txt": {HASH_KEY: "aa", "team": "x", "filename": "same.txt"},
        "changed.txt": {HASH_KEY: "aa", "team": "x"},
        "meta.txt": {HASH_KEY: "aa", "team": "y"},
        "other.txt": {HASH_KEY: "aa", "team": "x"},
    }
    send, skip = plan(files, stored, {"team": "x"})
    assert [f.doc_id for f in skip] == ["same.txt"]
    assert [f.doc_id for f in send] == ["changed.txt", "new.txt", "meta.txt"]
    # A document indexed without the hash (e.g. by the UI) is sent again.
    send, skip = plan([_file("a.txt")], {"a.txt": {"filename": "a.txt"}}, {})
    assert len(send) == 1 and not skip


class FakeAppliance:
    """The listing and upload routes of a server, in memory; 401 without the right key."""

    def __init__(self, key: str = "sk-right", fail: frozenset[str] = frozenset()) -> None:
        self.key = key
        self.fail = fail
        self.docs: dict[str, dict[str, Any]] = {}
        self.uploads: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {self.key}":
            error = {"message": "wrong key", "type": "x", "param": None, "code": "invalid_api_key"}
            return httpx.Response(401, json={"error": error})
        if request.method == "GET":
            data = [{"id": k, "metadata": v} for k, v in sorted(self.docs.items())]
            after = request.url.params.get("after")
            start = int(after) if after else 0
            page = data[start : start + 2]  # tiny pages: the cursor is followed
            more = start + 2 < len(data)
            return httpx.Response(
                200, json={"data": page, "next": str(start + 2) if more else None}
            )
        body = request.read().decode("utf-8", "replace")
        name = re.search(r'filename="([^"]+)"', body)
        meta = re.search(r'name="metadata"\r\n\r\n(.*?)\r\n--', body, re.S)
        assert name is not None and meta is not None
        filename = name.group(1)
        self.uploads.append(filename)
        if filename in self.fail:
            failed = {"status": 400, "message": "cannot parse", "type": "x", "code": "bad"}
            return httpx.Response(200, json={"files": [{"status": "error", "error": failed}]})
        self.docs[filename] = json.loads(meta.group(1))
        return httpx.Response(
            200, json={"files": [{"status": "indexed", "doc_id": filename, "chunks": 2}]}
        )


def _folder(tmp_path: Path, count: int) -> Path:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    for i in range(count):
        (root / ("sub" if i % 2 else "") / f"f{i}.txt").write_text(f"text {i}", encoding="utf-8")
    (root / "skip.bin").write_bytes(b"\x00")  # not a supported type: never sent
    return root


async def _run(fake: FakeAppliance, root: Path, key: str = "sk-right", **kw: Any) -> Any:
    transport = httpx.MockTransport(fake)
    async with RemoteClient("http://t", key, transport=transport, backoff_s=0.001) as client:
        return await index_remote(client, [str(root)], "kb", kw, workers=3, progress=False)


async def test_a_rerun_uploads_only_new_and_changed_files(tmp_path: Path) -> None:
    root = _folder(tmp_path, 7)
    fake = FakeAppliance()
    first = await _run(fake, root)
    assert (first.indexed, first.skipped, first.failed, first.chunks) == (7, 0, 0, 14)
    assert sorted(fake.uploads) == sorted(
        ["f0.txt", "f2.txt", "f4.txt", "f6.txt", "sub/f1.txt", "sub/f3.txt", "sub/f5.txt"]
    )
    (root / "f0.txt").write_text("changed", encoding="utf-8")
    (root / "f9.txt").write_text("new", encoding="utf-8")
    fake.uploads.clear()
    again = await _run(fake, root)
    assert (again.indexed, again.skipped) == (2, 6)
    assert sorted(fake.uploads) == ["f0.txt", "f9.txt"]
    # Other metadata on this run: every file is sent again to carry it.
    fake.uploads.clear()
    tagged = await _run(fake, root, team="x")
    assert (tagged.indexed, tagged.skipped) == (8, 0)


async def test_per_file_failures_are_reported_and_exit_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _folder(tmp_path, 3)
    summary = await _run(FakeAppliance(fail=frozenset({"f2.txt"})), root)
    assert summary.indexed == 2 and [f[1] for f in summary.failures] == ["cannot parse"]
    assert report(summary, "kb", "http://t") == 1
    captured = capsys.readouterr()
    assert "f2.txt: cannot parse" in captured.err
    assert "2 indexed, 0 unchanged, 0 skipped (already indexed), 1 failed" in captured.out


async def test_a_wrong_key_stops_before_any_upload(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeAppliance()
    summary = await _run(fake, _folder(tmp_path, 3), key="sk-wrong")
    assert fake.uploads == [] and summary.fatal is not None and summary.fatal.status == 401
    assert report(summary, "kb", "http://t") == 1
    assert "wrong key" in capsys.readouterr().err


async def test_a_server_that_is_not_an_appliance_is_an_error_not_a_crash(tmp_path: Path) -> None:
    def elsewhere(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"hello": "world"})

    transport = httpx.MockTransport(elsewhere)
    async with RemoteClient("http://t", transport=transport) as client:
        summary = await index_remote(client, [str(_folder(tmp_path, 2))], "kb", {}, 2, False)
    assert summary.fatal is not None and "not an appliance" in summary.fatal.message
