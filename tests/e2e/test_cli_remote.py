"""`rag-appliance index | search | eval --server URL` against a `rag-appliance serve` subprocess."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
DATASET = ROOT / "tests" / "data" / "beir-mini"
KEY = "sk-remote-e2e"
FILES = 30
TOPICS = ["orchards", "invoices", "rivers", "engines", "lamps", "harbours"]

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = os.environ | {
        "HF_HUB_OFFLINE": "1",
        "RAG_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "RAG_GENERATION__ENABLED": "false",
        "RAG_SERVER__UI": "false",
        "RAG_SERVER__API_KEYS": f'["{KEY}"]',
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag_appliance", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, "server exited"
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _env(key: str | None = KEY) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAG_API_KEY"}
    return env | ({"RAG_API_KEY": key} if key else {})


def _cli(*args: str, key: str | None = KEY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rag_appliance", *args],
        cwd=ROOT,
        env=_env(key),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _collection(url: str, name: str) -> dict[str, int]:
    response = httpx.get(
        f"{url}/v1/collections/{name}", headers={"authorization": f"Bearer {KEY}"}, timeout=10
    )
    return response.json() if response.status_code == 200 else {"documents": 0}


def _doc_ids(url: str, name: str) -> list[str]:
    headers = {"authorization": f"Bearer {KEY}"}
    ids: list[str] = []
    after: str | None = None
    while True:
        params = {"limit": 7} | ({"after": after} if after else {})
        page = httpx.get(
            f"{url}/v1/collections/{name}/documents", params=params, headers=headers
        ).json()
        ids += [d["id"] for d in page["data"]]
        after = page["next"]
        if not after:
            return ids


def _folder(root: Path) -> list[str]:
    names = []
    for i in range(FILES):
        name = f"{'notes/' if i % 3 == 0 else ''}doc{i:02d}.md"
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        topic = TOPICS[i % len(TOPICS)]
        body = " ".join(f"Paragraph {j} of note {i} is about {topic}." for j in range(60))
        path.write_text(f"# Note {i} on {topic}\n\n{body}\n", encoding="utf-8")
        names.append(name)
    return names


def test_interrupted_index_resumes_with_the_remainder(server: str, tmp_path: Path) -> None:
    names = _folder(tmp_path / "docs")
    argv = [sys.executable, "-m", "rag_appliance", "index", str(tmp_path / "docs")]
    argv += ["--collection", "bulk", "--server", server, "--workers", "1"]
    first = subprocess.Popen(
        argv, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while _collection(server, "bulk")["documents"] < 5:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 130, (out, err)
    assert "interrupted; run it again" in err
    # The upload cut short is rolled back by the server; wait until nothing is pending.
    deadline = time.monotonic() + 30
    while (info := _collection(server, "bulk"))["pending_points"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    done = info["documents"]
    assert 5 <= done < FILES
    again = _cli("index", str(tmp_path / "docs"), "--collection", "bulk", "--server", server)
    assert again.returncode == 0, again.stderr
    summary = re.search(r"(\d+) indexed, (\d+) unchanged, (\d+) skipped", again.stdout)
    assert summary is not None, again.stdout
    assert [int(n) for n in summary.groups()] == [FILES - done, 0, done]
    ids = _doc_ids(server, "bulk")
    assert sorted(ids) == sorted(names)  # each file once, under its relative path
    assert _collection(server, "bulk")["documents"] == FILES
    # Nothing changed: a third run sends nothing.
    third = _cli("index", str(tmp_path / "docs"), "--collection", "bulk", "--server", server)
    assert f"0 indexed, 0 unchanged, {FILES} skipped" in third.stdout

    # search --server, in-process here to see that no model library was imported for it.
    code = (
        "import sys; from rag_appliance.cli import main; "
        f"rc = main(['search', 'which notes are about harbours', '--collection', 'bulk', "
        f"'--server', {server!r}, '--top-k', '3']); "
        "print('HEAVY', [m for m in ('torch', 'transformers', 'sentence_transformers', "
        "'qdrant_edge') if m in sys.modules]); sys.exit(rc)"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True
    )
    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    assert len(lines) == 4 and "HEAVY []" in lines[-1]
    assert all("harbours" in line for line in lines[:3]), lines


def test_a_wrong_key_or_no_server_is_a_clear_error(server: str, tmp_path: Path) -> None:
    _folder(tmp_path / "docs")
    index = _cli(
        "index", str(tmp_path / "docs"), "--collection", "denied", "--server", server,
        "--api-key", "sk-wrong",
    )  # fmt: skip
    assert index.returncode == 1
    assert "401" in index.stderr and "Traceback" not in index.stderr
    assert _collection(server, "denied")["documents"] == 0
    search = _cli("search", "x", "--collection", "bulk", "--server", server, key=None)
    assert search.returncode == 1 and "401" in search.stderr
    elsewhere = f"http://127.0.0.1:{free_port()}"
    gone = _cli("search", "x", "--collection", "bulk", "--server", elsewhere, "--retries", "1")
    assert gone.returncode == 1 and "cannot reach the server" in gone.stderr
    missing = _cli("search", "x", "--collection", "nope", "--server", server)
    assert missing.returncode == 1 and "404" in missing.stderr and "nope" in missing.stderr


def test_eval_indexes_the_corpus_through_the_server_once(server: str) -> None:
    args = ["eval", "--dataset", str(DATASET), "--collection", "mini", "--server", server]
    first = _cli(*args)
    assert first.returncode == 0, first.stderr
    assert "66 documents (66 indexed now), 26 judged queries" in first.stdout
    table = {line.split()[0]: line.split() for line in first.stdout.splitlines()[1:7]}
    assert float(table["dense"][1]) > 90  # nDCG@10 of the dense row, as the local eval gives
    again = _cli(*args)
    assert "(0 indexed now)" in again.stdout
