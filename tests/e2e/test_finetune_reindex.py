"""finetune -> reindex -> chat, as a user runs them: the CLI and `serve` in subprocesses.

A small collection is indexed with the bundled MiniLM, a model fine-tuned from it on a few
pairs, the collection re-indexed with that model (blue/green: a new version, the alias
switched), then a server on the new model answers a RAG chat from the re-indexed collection
(real SmolLM2 through vLLM), and a server still on the old model refuses the collection (409).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
FACTS = {
    "ferry.txt": "The harbour ferry leaves Pellin at 6:40 every morning and returns at 19:15.",
    "bakery.txt": "The Marlow bakery sells rye bread baked with caraway seeds on Tuesdays only.",
    "lighthouse.txt": "The Skarv lighthouse was automated in 1987; its lamp is seen 18 miles off.",
    "library.txt": "The Oddby library lends fishing rods to members for up to two weeks.",
}
QUERIES = {
    "ferry.txt": ("When does the ferry leave Pellin?", "Pellin ferry timetable"),
    "bakery.txt": ("Which day is rye bread sold in Marlow?", "caraway rye bread"),
    "lighthouse.txt": ("When was the Skarv lighthouse automated?", "lighthouse lamp range"),
    "library.txt": ("Can I borrow a fishing rod?", "Oddby library loans"),
}


def env_for(data_dir: Path, **extra: str) -> dict[str, str]:
    return os.environ | {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "RAG_DATA_DIR": str(data_dir),
        # The bundled chat model is prepared once per machine, not once per test run.
        "RAG_GENERATION__MODEL_CACHE_DIR": str(ROOT / "test-output" / "models"),
        **extra,
    }


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rag_appliance", *args],
        cwd=ROOT,
        env=env_for(data_dir),
        capture_output=True,
        text=True,
        timeout=600,
    )


@contextmanager
def serving(data_dir: Path, **extra: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag_appliance", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env_for(data_dir, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else "server exited"
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(60)


def test_finetune_reindex_then_chat_from_the_new_version(tmp_path: Path) -> None:
    data, docs = tmp_path / "data", tmp_path / "docs"
    docs.mkdir()
    for name, text in FACTS.items():
        (docs / name).write_text(text, encoding="utf-8")
    pairs = tmp_path / "tiny.jsonl"
    lines = [
        json.dumps({"query": q, "positive": FACTS[d]}) for d, qs in QUERIES.items() for q in qs
    ]
    pairs.write_text("\n".join(lines) + "\n", encoding="utf-8")

    indexed = cli(data, "index", str(docs), "--collection", "kb")
    assert indexed.returncode == 0, indexed.stderr
    model = tmp_path / "models" / "ft-kb"
    tuned = cli(
        data, "finetune", "--pairs", str(pairs), "--output", str(model), "--force", "--epochs", "1"
    )
    assert tuned.returncode == 0, tuned.stderr
    # Bad input: one line, a non-zero exit, nothing written (checked before any model loads).
    bad = cli(data, "reindex", "--collection", "kb", "--model", str(model), "--batch", "0")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("rag-appliance: --batch must")
    assert not (data / "reindex").exists()
    switched = cli(data, "reindex", "--collection", "kb", "--model", str(model))
    assert switched.returncode == 0, switched.stderr
    assert "into 'kb__v2'" in switched.stdout and "'kb__v1' kept" in switched.stdout

    with serving(data, RAG_EMBEDDING__MODEL=str(model)) as url:
        (kb,) = httpx.get(f"{url}/v1/collections").json()["data"]  # the alias, not kb__v1/2
        assert (kb["id"], kb["version"], kb["provenance"]["model"]) == ("kb", "kb__v2", "ft-kb")
        ready = httpx.get(f"{url}/ready").json()
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=300)
        answer = client.chat.completions.create(
            model=ready["generator"]["model"],
            messages=[{"role": "user", "content": "When does the ferry leave Pellin?"}],
            max_tokens=30,
            temperature=0,
            extra_body={"rag": {"collection": "kb"}},
        )
        assert answer.choices[0].message.content
        sources = (answer.model_extra or {})["sources"]
        assert sources[0]["doc_id"] == "ferry.txt" and "6:40" in sources[0]["text"]

    # A server still on the old model: the collection now holds another model's vectors.
    with serving(data, RAG_GENERATION__ENABLED="false") as url:
        r = httpx.post(f"{url}/v1/search", json={"collection": "kb", "query": "ferry"})
        assert r.status_code == 409
        error = r.json()["error"]
        assert error["param"] == "collection" and error["type"]
        assert "re-indexed with model 'ft-kb'" in error["message"]
        assert "reindex --collection kb --model all-MiniLM-L6-v2" in error["message"]
