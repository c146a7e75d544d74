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
from rag_appliance.embedding.service import TOKEN_IDS_REFUSED
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


def test_token_id_inputs_when_enabled(encoder: Encoder, reference_model: Any) -> None:
    ids = encoder.tokenize(TEXTS[:2])
    with live_server(make_settings(embedding={"accept_token_ids": True}), encoder) as url:
        single = client(url).embeddings.create(model=MODEL, input=ids[0])
        many = client(url).embeddings.create(model=MODEL, input=ids)
    reference = reference_model.encode(TEXTS[:2])
    assert min_cosine(vectors(single), reference[:1]) >= 0.999
    assert min_cosine(vectors(many), reference) >= 0.999


def test_token_ids_are_refused_by_default(base_url: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(base_url, max_retries=0).embeddings.create(model=MODEL, input=[[1, 2, 3]])
    body = info.value.body
    assert isinstance(body, dict)
    error = body.get("error", body)
    assert error["message"] == TOKEN_IDS_REFUSED
    assert (error["param"], error["code"]) == ("input", "token_ids_not_accepted")


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

    # check_embedding_ctx_length=False: LangChain sends text instead of tiktoken ids.
    options: dict[str, Any] = {"base_url": f"{base_url}/v1", "api_key": "unused"}
    lc = OpenAIEmbeddings(model=MODEL, check_embedding_ctx_length=False, **options)
    docs = np.array(lc.embed_documents(TEXTS), dtype=np.float32)
    query = np.array([lc.embed_query(TEXTS[3])], dtype=np.float32)
    assert min_cosine(docs, reference_model.encode(TEXTS)) >= 0.999
    assert min_cosine(query, reference_model.encode(TEXTS[3:])) >= 0.999


def langchain_options(base_url: str) -> dict[str, Any]:
    """LangChain's defaults, pointed at the server (its pydantic aliases defeat mypy)."""
    return {"base_url": f"{base_url}/v1", "api_key": "x", "max_retries": 0}


def cl100k_loads() -> bool:
    """Whether tiktoken has cl100k_base: it downloads the table on first use (no copy ships)."""
    import tiktoken

    try:
        tiktoken.get_encoding("cl100k_base")
    except Exception:
        return False
    return True


def test_langchain_default_fails_loudly(base_url: str) -> None:
    from langchain_openai import OpenAIEmbeddings

    lc = OpenAIEmbeddings(model=MODEL, **langchain_options(base_url))
    if cl100k_loads():
        with pytest.raises(openai.BadRequestError, match="check_embedding_ctx_length=False"):
            lc.embed_documents(TEXTS)
    else:  # offline: tiktoken cannot fetch its table, so LangChain fails before sending
        with pytest.raises(Exception, match=r"openaipublic|cl100k|Connection|resolve"):
            lc.embed_documents(TEXTS)


@pytest.fixture
def offline_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    """cl100k_base replaced by a byte-level BPE, so LangChain's tiktoken path runs offline."""
    import tiktoken

    fake = tiktoken.Encoding(
        name="cl100k_base",
        pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
        mergeable_ranks={bytes([i]): i for i in range(256)},
        special_tokens={},
    )
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: fake)


@pytest.mark.usefixtures("offline_tiktoken")
def test_langchain_default_request_path_gets_the_400(base_url: str) -> None:
    from langchain_openai import OpenAIEmbeddings

    lc = OpenAIEmbeddings(model=MODEL, **langchain_options(base_url))
    with pytest.raises(openai.BadRequestError, match="check_embedding_ctx_length=False") as info:
        lc.embed_documents(TEXTS)
    assert info.value.code == "token_ids_not_accepted"
    with pytest.raises(openai.BadRequestError):
        lc.embed_query(TEXTS[0])


@pytest.mark.usefixtures("offline_tiktoken")
def test_langchain_tiktoken_ids_are_the_wrong_vectors_the_default_prevents(
    encoder: Encoder, reference_model: Any
) -> None:
    from langchain_openai import OpenAIEmbeddings

    with live_server(make_settings(embedding={"accept_token_ids": True}), encoder) as url:
        lc = OpenAIEmbeddings(model=MODEL, **langchain_options(url))
        got = np.array(lc.embed_documents(TEXTS), dtype=np.float32)
    # Accepted, but the ids meant bytes to tiktoken and word pieces to this model.
    assert got.shape == (4, 384)
    assert min_cosine(got, reference_model.encode(TEXTS)) < 0.5


def test_metrics_scrape_shows_http_and_stage_histograms(base_url: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"{base_url}/metrics").text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    before = scrape()
    for text in TEXTS:
        client(base_url).embeddings.create(model=MODEL, input=[text, text.upper()])
    after = scrape()
    ok = (("method", "POST"), ("route", "/v1/embeddings"), ("status", "200"))

    def grew(name: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
        return after[(name, labels)] - before.get((name, labels), 0.0)

    assert grew("rag_http_requests_total", ok) == 4
    assert grew("rag_http_request_duration_seconds_count", ok) == 4
    assert grew("rag_embedding_queue_wait_seconds_count") == 8
    passes = grew("rag_embedding_forward_passes_total")
    assert 1 <= grew("rag_embedding_forward_seconds_count") == passes <= 4
    assert grew("rag_embedding_batch_size_sum") == 8
    assert grew("rag_embedding_batch_tokens_sum") == grew("rag_embedding_padded_tokens_total")
    assert grew("rag_embedding_forward_seconds_sum") > 0
    assert ("rag_retrieval_seconds_count", ()) in after
    assert ("rag_chat_time_to_first_token_seconds_count", ()) in after


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
