"""Schemathesis over every operation of /openapi.json against `rag-appliance serve`: no 5xx, and
every answer's status, content type, headers and body as the document says.

The server is the real one: the bundled embedding model, the embedded store in a temporary
data_dir, the vLLM generator with SmolLM2 (answers capped short by its settings), one API key
so the auth paths are exercised. A collection is indexed first so search and chat hit data.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-schemathesis-0123456789abcdef"
SEED = 20261202
MAX_EXAMPLES = 20  # per operation in fuzzing (the coverage phase has its own count)
# Positive data the schema cannot tell from bad data still gets 400: limits that depend on
# tokens (context length, the model's vocabulary, token budgets), `ids` as long as `texts`,
# Matryoshka sizes, filters on fields a collection lacks. Everything else is checked as is.
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]
"""
DOCS = [
    {"id": "ferry", "text": "The harbour ferry leaves Pellin at 6:40 every morning."},
    {"id": "bakery", "text": "The bakery on Quay Street sells rye bread until noon."},
]


def tiny_reranker(folder: Path) -> Path:
    """A random-weight two-layer BERT cross-encoder (one logit) with the real WordPiece vocab.

    No reranker ships in a package; this one runs the real CrossEncoder path (load, tokenise,
    score, limits) in a second, which is what the HTTP contract needs, not ranking quality.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from rag_appliance.embedding.encoder import resolve_source

    tokenizer = AutoTokenizer.from_pretrained(resolve_source("all-MiniLM-L6-v2"))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    config.num_labels = 1
    torch.manual_seed(0)
    model: Any = BertForSequenceClassification  # untyped in transformers' stubs
    model(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    data = tmp_path_factory.mktemp("schemathesis")
    reranker = tiny_reranker(data / "tiny-reranker")
    env = os.environ | {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "RAG_DATA_DIR": str(data / "data"),
        "RAG_GENERATION__MODEL_CACHE_DIR": str(ROOT / "test-output" / "models"),
        "RAG_SERVER__UI": "false",
        "RAG_SERVER__API_KEYS": f'["{KEY}"]',
        # The fuzzer sends wrong keys on purpose; throttling them would 429 the whole run.
        "RAG_SERVER__AUTH_MAX_FAILURES": "0",
        # Short answers: a small context bounds every generation (longer asks get a 400).
        "RAG_GENERATION__MAX_TOKENS": "8",
        "RAG_GENERATION__MAX_MODEL_LEN": "128",
        "RAG_RAG__DEFAULT_COLLECTION": "kb",
        "RAG_RERANK__MODEL": str(reranker),
        "RAG_RERANK__MAX_DOCUMENTS": "16",
        "RAG_SEARCH_LOG__ENABLED": "true",  # so /v1/feedback is served, not 503
    }
    log = (data / "server.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag_appliance", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, log)
        auth = {"Authorization": f"Bearer {KEY}"}
        r = httpx.post(
            f"{url}/v1/index",
            json={"collection": "kb", "documents": DOCS},
            headers=auth,
            timeout=60,
        )
        assert r.status_code == 200, r.text
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
        log.close()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: object) -> None:
    deadline = time.monotonic() + 600
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.5)


def test_schemathesis_finds_no_5xx_and_no_violations(server: str, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{server}/openapi.json",
        "--header",
        f"Authorization: Bearer {KEY}",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--seed",
        str(SEED),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-database",
        "none",
        "--workers",
        "1",
        "--request-timeout",
        "120",
        "--suppress-health-check",
        "all",
        "--continue-on-failure",
        # A CPU generator writes a long asked-for answer (up to the context) in tens of seconds.
        "--max-response-time",
        "90",
    ]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    elapsed = time.monotonic() - started
    report = result.stdout + result.stderr
    print(report)
    print(f"schemathesis took {elapsed:.0f} s")
    assert result.returncode == 0, report[-20000:]
    # Every operation of the document was tried, and thousands of cases ran.
    auth = {"Authorization": f"Bearer {KEY}"}
    spec = httpx.get(f"{server}/openapi.json", headers=auth).json()
    operations = sum(len(item) for item in spec["paths"].values())
    tested = re.search(r"Tested:\s+(\d+)", report)
    assert tested is not None and int(tested.group(1)) == operations, report[-3000:]
    generated = re.search(r"(\d+) generated", report)
    assert generated is not None and int(generated.group(1)) > 20 * operations
