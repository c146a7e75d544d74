"""The CLI as a user runs it: `python -m rag_appliance serve` in a subprocess, default profile."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from rag_appliance.embedding.encoder import resolve_source
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = os.environ | {
        "HF_HUB_OFFLINE": "1",
        "RAG_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        # The bundled chat model is prepared once per machine, not once per test run.
        "RAG_GENERATION__MODEL_CACHE_DIR": str(ROOT / "test-output" / "models"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag_appliance", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
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
        proc.wait(30)


def test_openai_client_against_the_cli_server(server: str) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(resolve_source("all-MiniLM-L6-v2"), device="cpu")
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused")
    texts = [f"Document {i}: self-hosted embeddings are cheap to re-index." for i in range(2048)]
    for inputs in ("A single string input.", texts):
        response = client.embeddings.create(model="all-MiniLM-L6-v2", input=inputs)
        got = np.array([d.embedding for d in response.data], dtype=np.float32)
        expected_texts = [inputs] if isinstance(inputs, str) else inputs
        assert got.shape == (len(expected_texts), 384)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-3)
        sample = slice(None, None, 97)
        ref = reference.encode(expected_texts[sample], normalize_embeddings=True)
        assert float(np.min(np.sum(got[sample] * ref, axis=1))) >= 0.999
    # Token ids are opt-in (embedding.accept_token_ids): the default profile asks for text.
    ids = reference.tokenizer("Token ids in, vectors out.", add_special_tokens=False)["input_ids"]
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="all-MiniLM-L6-v2", input=[ids])
    assert info.value.code == "token_ids_not_accepted" and info.value.param == "input"
    assert "check_embedding_ctx_length=False" in info.value.message
    ready = httpx.get(f"{server}/ready").json()["embedding"]
    assert ready["model"] == "all-MiniLM-L6-v2" and ready["dimension"] == 384


def test_default_profile_serves_rag_chat(server: str) -> None:
    ready = httpx.get(f"{server}/ready").json()
    assert ready["generator"]["running"] is True
    docs = [{"id": "fact", "text": "The harbour ferry leaves Pellin at 6:40 every morning."}]
    r = httpx.post(f"{server}/v1/index", json={"collection": "kb", "documents": docs}, timeout=60)
    assert r.status_code == 200
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", timeout=300)
    answer = client.chat.completions.create(
        model=ready["generator"]["model"],
        messages=[{"role": "user", "content": "When does the ferry leave Pellin?"}],
        max_tokens=30,
        extra_body={"rag": {"collection": "kb"}},
    )
    assert answer.choices[0].message.content
    assert (answer.model_extra or {})["sources"][0]["doc_id"] == "fact"


def test_invalid_settings_fail_with_one_line() -> None:
    env = os.environ | {"RAG_EMBEDDING__DTYPE": "float8", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "rag_appliance", "serve", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "embedding.dtype" in lines[0], result.stderr
