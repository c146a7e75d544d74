"""A real (tiny, random) BERT cross-encoder behind a real server built by build_services.

No reranker weights ship in any package, so the test builds one: a 2-layer BertConfig with the
WordPiece tokenizer of the bundled embedding model, saved to a folder. Its scores mean nothing;
what is checked is that the server returns exactly what sentence-transformers' own
CrossEncoder(path).predict gives, in the right order, with the right limits and errors.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from rag_appliance.embedding.encoder import Encoder, resolve_source
from rag_appliance.rerank.model import CrossEncoderModel
from rag_appliance.services import Services, build_services
from rag_appliance.settings import RerankSettings
from tests.conftest import live_server, make_settings

MAX_POSITIONS = 128  # small, so that a long document is truncated
QUERY = "What is the capital of France?"
DOCS = [
    "The cat sat on the mat.",
    "Paris is the capital and largest city of France.",
    "How do I bake sourdough bread at home?",
    "Quantum computers use qubits that can be in superposition.",
    "Berlin is the capital of Germany. " * 40,  # ~280 tokens: cut to the model's 128
    "France borders Spain, Italy, Germany and Belgium.",
]


@pytest.fixture(scope="module")
def tiny_reranker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight BERT cross-encoder (one logit) saved with a real WordPiece tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("models") / "tiny-reranker"
    tokenizer = AutoTokenizer.from_pretrained(resolve_source("all-MiniLM-L6-v2"))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_POSITIONS,
        initializer_range=0.2,  # the default 0.02 scores every pair ~0.501: no order to check
    )
    config.num_labels = 1  # one relevance logit: what a reranker is
    torch.manual_seed(0)
    model: Any = BertForSequenceClassification  # untyped in transformers' stubs
    model(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def reference(tiny_reranker: Path) -> Any:
    """sentence-transformers itself on the same folder: the scores to match."""
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(tiny_reranker), device="cpu")


@pytest.fixture(scope="module")
def services(tiny_reranker: Path, tmp_path_factory: pytest.TempPathFactory) -> Services:
    settings = make_settings(
        rerank={"model": str(tiny_reranker), "max_documents": 8, "aliases": ["rr"]},
        embedding={"dtype": "float32"},  # no calibration: this test is about the reranker
        generation={"enabled": False},
        server={"ui": False},
    )
    settings = settings.model_copy(update={"data_dir": tmp_path_factory.mktemp("data")})
    return build_services(settings)


@pytest.fixture(scope="module")
def url(services: Services) -> Iterator[str]:
    encoder = services.embedding.encoder
    with live_server(services.settings, encoder, services=services) as base:
        yield base


def expected_scores(reference: Any, query: str, docs: list[str]) -> np.ndarray:
    return np.asarray(reference.predict([(query, d) for d in docs], show_progress_bar=False))


def post(url: str, body: dict[str, Any], path: str = "/v1/rerank") -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=60)


def test_top_n_results_best_first_with_the_models_own_scores(url: str, reference: Any) -> None:
    response = post(url, {"model": "tiny-reranker", "query": QUERY, "documents": DOCS, "top_n": 4})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tiny-reranker"  # the folder's name
    results = body["results"]
    assert len(results) == 4
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    want = expected_scores(reference, QUERY, DOCS)
    # Indexes refer to the input order: each score is the reference's for that document.
    for r in results:
        assert r["relevance_score"] == pytest.approx(float(want[r["index"]]), abs=1e-5)
        assert set(r) == {"index", "relevance_score"}  # return_documents defaults to false
    assert [r["index"] for r in results] == list(np.argsort(-want, kind="stable")[:4])
    assert all(0.0 < s < 1.0 for s in scores)  # sigmoid of one logit


def test_usage_counts_the_tokens_the_model_read(url: str, tiny_reranker: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_reranker))
    tokens = [
        len(tokenizer(QUERY, d, truncation=True, max_length=MAX_POSITIONS)["input_ids"])
        for d in DOCS
    ]
    assert max(tokens) == MAX_POSITIONS  # the long document was cut
    usage = post(url, {"query": QUERY, "documents": DOCS, "top_n": 1}).json()["usage"]
    assert usage == {"prompt_tokens": sum(tokens), "total_tokens": sum(tokens)}


def test_return_documents_and_all_results_without_top_n(url: str, reference: Any) -> None:
    body = post(url, {"query": QUERY, "documents": DOCS, "return_documents": True}).json()
    results = body["results"]
    assert sorted(r["index"] for r in results) == list(range(len(DOCS)))
    for r in results:
        assert r["document"] == {"text": DOCS[r["index"]]}


def test_a_cohere_style_call(url: str, reference: Any) -> None:
    """The body and path Cohere's v2 client sends: model, query, documents, top_n."""
    docs = DOCS[:3]
    response = httpx.post(
        f"{url}/v2/rerank",
        json={"model": "rr", "query": QUERY, "documents": docs, "top_n": 2},
        headers={"Authorization": "Bearer unused", "accept": "application/json"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    want = expected_scores(reference, QUERY, docs)
    assert [r["index"] for r in body["results"]] == list(np.argsort(-want, kind="stable")[:2])
    assert isinstance(body["id"], str) and body["id"]
    # Cohere v1 objects ({"text": ...}) and strings rank the same.
    as_objects = post(url, {"query": QUERY, "documents": [{"text": d} for d in docs], "top_n": 2})
    assert [r["index"] for r in as_objects.json()["results"]] == [
        r["index"] for r in body["results"]
    ]


def test_concurrent_requests_get_their_own_answers(url: str, reference: Any) -> None:
    queries = [QUERY, "bread recipes", "qubits", "cats"]

    def call(q: str) -> list[float]:
        body = post(url, {"query": q, "documents": DOCS}).json()
        return [r["relevance_score"] for r in sorted(body["results"], key=lambda r: r["index"])]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        got = list(pool.map(call, queries))
    for q, scores in zip(queries, got, strict=True):
        np.testing.assert_allclose(scores, expected_scores(reference, q, DOCS), atol=1e-5)


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"query": QUERY, "documents": []}, 400, "documents", None),
        ({"query": QUERY, "documents": ["d"] * 9}, 400, "documents", None),  # max_documents 8
        ({"query": QUERY, "documents": DOCS, "top_n": 0}, 400, "top_n", None),
        ({"query": QUERY, "documents": DOCS, "model": "nope"}, 404, "model", "model_not_found"),
        ({"documents": DOCS}, 400, "query", None),
    ],
)
def test_bad_input_gets_the_openai_error_shape(
    url: str, body: dict[str, Any], status: int, param: str, code: str | None
) -> None:
    response = post(url, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)


def test_models_list_the_reranker(url: str) -> None:
    names = [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]]
    assert {"all-MiniLM-L6-v2", "tiny-reranker", "rr"} <= set(names)


def test_a_server_without_a_reranker_answers_503(encoder: Encoder) -> None:
    with live_server(make_settings(server={"ui": False}), encoder) as base:
        response = post(base, {"query": QUERY, "documents": DOCS})
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["type"] == "service_unavailable"
    assert "rerank.model" in error["message"]


def test_max_length_and_dtype_settings(tiny_reranker: Path, reference: Any) -> None:
    """rerank.max_length cuts pairs as CrossEncoder(max_length=...) does; bfloat16 loads as such."""
    from sentence_transformers import CrossEncoder

    short = CrossEncoderModel(RerankSettings(model=str(tiny_reranker), max_length=16))
    assert short.max_length == 16
    assert short.count_tokens(QUERY, DOCS) == 16 * len(DOCS)  # every pair is over 16 tokens
    cut = CrossEncoder(str(tiny_reranker), device="cpu", max_length=16)
    np.testing.assert_allclose(
        short.score(QUERY, DOCS).scores,
        cut.predict([(QUERY, d) for d in DOCS], show_progress_bar=False),
        atol=1e-5,
    )
    # A max_length above the model's is capped to it.
    capped = CrossEncoderModel(RerankSettings(model=str(tiny_reranker), max_length=4096))
    assert capped.max_length == MAX_POSITIONS
    half = CrossEncoderModel(RerankSettings(model=str(tiny_reranker), dtype="bfloat16"))
    assert half.info.dtype == "bfloat16"
    np.testing.assert_allclose(
        half.score(QUERY, DOCS).scores, expected_scores(reference, QUERY, DOCS), atol=2e-2
    )


def test_search_reranks_by_default_when_a_reranker_is_configured(url: str, reference: Any) -> None:
    docs = [{"id": f"d{i}", "text": text} for i, text in enumerate(DOCS[:4] + DOCS[5:])]
    r = httpx.post(f"{url}/v1/index", json={"collection": "rr", "documents": docs}, timeout=120)
    assert r.status_code == 200, r.text
    body = {"collection": "rr", "query": QUERY, "top_k": 3}
    reranked = httpx.post(f"{url}/v1/search", json=body, timeout=60).json()
    plain = httpx.post(f"{url}/v1/search", json={**body, "rerank": False}, timeout=60).json()
    assert reranked["reranked"] is True and plain["reranked"] is False
    # Every document is a candidate (rerank.candidates > 5): the top 3 are the reranker's own.
    texts = [d["text"] for d in docs]
    want = expected_scores(reference, QUERY, texts)
    best = [f"d{i}" for i in np.argsort(-want, kind="stable")[:3]]
    assert [h["doc_id"] for h in reranked["data"]] == best
    for hit in reranked["data"]:
        index = int(hit["doc_id"][1:])
        assert hit["score"] == pytest.approx(float(want[index]), abs=1e-5)
