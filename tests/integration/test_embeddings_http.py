"""The real model behind a real uvicorn server, driven by the official openai client."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from rag_appliance.embedding.encoder import Encoder
from tests.conftest import live_server, make_settings
from tests.integration.conftest import min_cosine

MODEL = "all-MiniLM-L6-v2"
TEXTS = [
    "The cat sat on the mat.",
    "Quantum computers use qubits that can be in superposition.",
    "How do I bake sourdough bread at home?",
    "Paris is the capital of France.",
]


def client(base_url: str, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=kw.pop("api_key", "unused"), **kw)


def vectors(response: Any) -> np.ndarray:
    return np.array([d.embedding for d in response.data], dtype=np.float32)


def test_single_string_matches_sentence_transformers(base_url: str, reference_model: Any) -> None:
    response = client(base_url).embeddings.create(model=MODEL, input=TEXTS[1])
    got = vectors(response)
    assert got.shape == (1, 384)
    assert np.linalg.norm(got[0]) == pytest.approx(1.0, abs=1e-3)
    assert min_cosine(got, reference_model.encode([TEXTS[1]])) >= 0.999
    assert response.model == MODEL
    tokens = len(reference_model.tokenizer(TEXTS[1])["input_ids"])
    assert response.usage.prompt_tokens == tokens == response.usage.total_tokens


def test_2048_strings_in_order(base_url: str, reference_model: Any) -> None:
    texts = [f"{TEXTS[i % 4]} Item number {i}." for i in range(2048)]
    response = client(base_url).embeddings.create(model=MODEL, input=texts)
    assert [d.index for d in response.data] == list(range(2048))
    got = vectors(response)
    assert got.shape == (2048, 384)
    sample = list(range(0, 2048, 41))
    assert min_cosine(got[sample], reference_model.encode([texts[i] for i in sample])) >= 0.999


def test_token_id_inputs(base_url: str, reference_model: Any, encoder: Encoder) -> None:
    ids = encoder.tokenize(TEXTS[:2])
    single = client(base_url).embeddings.create(model=MODEL, input=ids[0])
    many = client(base_url).embeddings.create(model=MODEL, input=ids)
    reference = reference_model.encode(TEXTS[:2])
    assert min_cosine(vectors(single), reference[:1]) >= 0.999
    assert min_cosine(vectors(many), reference) >= 0.999


def test_float_and_base64_agree(base_url: str) -> None:
    body = {"model": MODEL, "input": TEXTS}
    floats = httpx.post(f"{base_url}/v1/embeddings", json=body).json()
    b64 = httpx.post(f"{base_url}/v1/embeddings", json=body | {"encoding_format": "base64"}).json()
    for f, b in zip(floats["data"], b64["data"], strict=True):
        decoded = np.frombuffer(base64.b64decode(b["embedding"]), dtype="<f4")
        np.testing.assert_allclose(decoded, np.array(f["embedding"], dtype=np.float32), rtol=1e-6)


def test_similarity_is_meaningful(base_url: str) -> None:
    got = vectors(
        client(base_url).embeddings.create(
            model=MODEL, input=["A feline rested on the rug.", TEXTS[0], TEXTS[1]]
        )
    )
    assert got[0] @ got[1] > got[0] @ got[2] + 0.3


def test_langchain_openai_embeddings(base_url: str, reference_model: Any) -> None:
    from langchain_openai import OpenAIEmbeddings

    # check_embedding_ctx_length=False: LangChain otherwise pre-tokenises with tiktoken, whose ids
    # mean nothing to this model (and tiktoken downloads its tables).
    options: dict[str, Any] = {"base_url": f"{base_url}/v1", "api_key": "unused"}
    lc = OpenAIEmbeddings(model=MODEL, check_embedding_ctx_length=False, **options)
    docs = np.array(lc.embed_documents(TEXTS), dtype=np.float32)
    query = np.array([lc.embed_query(TEXTS[3])], dtype=np.float32)
    assert min_cosine(docs, reference_model.encode(TEXTS)) >= 0.999
    assert min_cosine(query, reference_model.encode(TEXTS[3:])) >= 0.999


@pytest.mark.parametrize(
    ("kwargs", "status", "param"),
    [
        ({"input": ["x"] * 2049}, 400, "input"),
        ({"input": ""}, 400, "input[0]"),
        ({"input": [{"text": "x"}]}, 400, "input"),
        ({"input": "x", "model": "text-embedding-3-small"}, 404, "model"),
        ({"input": ["ok", "word " * 400], "extra_body": {"truncate": False}}, 400, "input[1]"),
        ({"input": "x", "dimensions": 128}, 400, "dimensions"),
    ],
)
def test_errors_through_the_client(
    base_url: str, kwargs: dict[str, Any], status: int, param: str
) -> None:
    args = {"model": MODEL} | kwargs
    with pytest.raises(openai.APIStatusError) as info:
        client(base_url, max_retries=0).embeddings.create(**args)
    assert info.value.status_code == status
    body = info.value.body
    assert isinstance(body, dict)
    error = body.get("error", body)  # the client unwraps "error"
    assert error["param"] == param and error["message"] and "type" in error


def test_long_input_truncated_by_default(base_url: str) -> None:
    response = client(base_url).embeddings.create(model=MODEL, input="word " * 400)
    assert response.usage.prompt_tokens == 256


def test_concurrent_requests_share_forward_passes(base_url: str) -> None:
    async def run() -> int:
        async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:
            before = (await http.get("/ready")).json()["embedding"]["engine"]["forward_passes"]
            bodies = [{"model": MODEL, "input": [f"request {i}", TEXTS[i % 4]]} for i in range(64)]
            responses = await asyncio.gather(*(http.post("/v1/embeddings", json=b) for b in bodies))
            assert all(r.status_code == 200 for r in responses)
            assert all(len(r.json()["data"]) == 2 for r in responses)
            after = (await http.get("/ready")).json()["embedding"]["engine"]["forward_passes"]
            return int(after - before)

    passes = asyncio.run(run())
    assert 1 <= passes < 64


def test_overload_returns_429_and_server_recovers(encoder: Encoder) -> None:
    settings = make_settings(embedding={"queue_max_items": 8, "batch_max_size": 8})

    async def run(url: str) -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            body = {"model": MODEL, "input": ["some words to encode here " * 8] * 8}
            responses = await asyncio.gather(
                *(http.post("/v1/embeddings", json=body) for _ in range(12))
            )
            for r in responses:
                if r.status_code == 429:
                    assert r.headers["retry-after"] == "1"
                    assert r.json()["error"]["type"] == "rate_limit_error"
            after = await http.post("/v1/embeddings", json={"model": MODEL, "input": "still up?"})
            assert after.status_code == 200
            return [r.status_code for r in responses]

    with live_server(settings, encoder) as url:
        statuses = asyncio.run(run(url))
    assert 429 in statuses and 200 in statuses and set(statuses) <= {200, 429}


def test_api_keys_with_the_client(encoder: Encoder) -> None:
    settings = make_settings(server={"api_keys": ["team-key"]})
    with live_server(settings, encoder) as url:
        with pytest.raises(openai.AuthenticationError):
            client(url, api_key="wrong", max_retries=0).embeddings.create(model=MODEL, input="x")
        ok = client(url, api_key="team-key").embeddings.create(model=MODEL, input="x")
        assert len(ok.data[0].embedding) == 384
        assert httpx.get(f"{url}/health").status_code == 200


def test_matryoshka_dimensions_when_the_profile_allows(encoder: Encoder) -> None:
    # all-MiniLM-L6-v2 is not Matryoshka-trained; the override only exercises the code path.
    settings = make_settings(embedding={"matryoshka_dims": [128]})
    with live_server(settings, encoder) as url:
        got = vectors(client(url).embeddings.create(model=MODEL, input=TEXTS, dimensions=128))
        full = vectors(client(url).embeddings.create(model=MODEL, input=TEXTS))
    assert got.shape == (4, 128)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    expected = full[:, :128] / np.linalg.norm(full[:, :128], axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=1e-5)
