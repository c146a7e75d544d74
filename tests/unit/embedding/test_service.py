"""EmbeddingService: limits, truncation, prefixes, token ids and dimensions (fake model)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest

from rag_appliance.embedding.service import TOKEN_IDS_REFUSED, EmbeddingService, EmbedParams
from rag_appliance.errors import InvalidRequest, ModelNotFound
from rag_appliance.settings import EmbeddingSettings
from tests.fakes import CLS, SEP, FakeEncoder, fake_vector


@pytest.fixture
async def service() -> AsyncIterator[EmbeddingService]:
    settings = EmbeddingSettings(
        max_inputs_per_request=4, max_tokens_per_request=100, accept_token_ids=True
    )
    svc = EmbeddingService(FakeEncoder(), settings)
    await svc.start()
    yield svc
    await svc.stop()


async def test_model_names(service: EmbeddingService) -> None:
    assert service.check_model(None) == "fake-model"
    assert service.check_model("fake-alias") == "fake-model"
    with pytest.raises(ModelNotFound) as info:
        service.check_model("gpt-4")
    assert info.value.status == 404 and info.value.param == "model"


async def test_usage_counts_model_tokens(service: EmbeddingService) -> None:
    result = await service.embed(EmbedParams(inputs=["abc", "de"]))
    assert result.prompt_tokens == (3 + 2) + (2 + 2)
    assert result.vectors.shape == (2, 8) and result.vectors.dtype == np.float32


async def test_limits(service: EmbeddingService) -> None:
    for params, param in [
        (EmbedParams(inputs=[]), "input"),
        (EmbedParams(inputs=["a"] * 5), "input"),
        (EmbedParams(inputs=["ok", ""]), "input[1]"),
        (EmbedParams(inputs=[[1, 2], []]), "input[1]"),
        (EmbedParams(inputs=[[5, 1000]]), "input[0]"),
        (EmbedParams(inputs=["x" * 30] * 4), "input"),  # 4 x 32 tokens > 100 per request
        (EmbedParams(inputs=["x"], dimensions=3), "dimensions"),
    ]:
        with pytest.raises(InvalidRequest) as info:
            await service.embed(params)
        assert info.value.param == param, params


async def test_truncation_default_and_rejection(service: EmbeddingService) -> None:
    long = "y" * 50
    truncated = await service.embed(EmbedParams(inputs=[long]))
    assert truncated.prompt_tokens == 32
    with pytest.raises(InvalidRequest) as info:
        await service.embed(EmbedParams(inputs=["ok", long], truncate=False))
    assert info.value.param == "input[1]" and "52 tokens" in info.value.message
    assert info.value.code == "context_length_exceeded"


async def test_prefixes_follow_input_type(service: EmbeddingService) -> None:
    enc = service.encoder
    plain = await service.embed(EmbedParams(inputs=["abc"]))
    query = await service.embed(EmbedParams(inputs=["abc"], input_type="query"))
    ids = enc.tokenize(["q: abc"])[0]
    np.testing.assert_allclose(query.vectors[0], fake_vector([CLS, *ids, SEP], 8), rtol=1e-6)
    assert not np.allclose(plain.vectors[0], query.vectors[0])
    tokens = await service.embed(EmbedParams(inputs=[enc.tokenize(["abc"])[0]], input_type="query"))
    np.testing.assert_allclose(tokens.vectors[0], query.vectors[0], rtol=1e-6)


async def test_dimensions_truncate_and_renormalise(service: EmbeddingService) -> None:
    full = await service.embed(EmbedParams(inputs=["abc"]))
    short = await service.embed(EmbedParams(inputs=["abc"], dimensions=4))
    assert short.vectors.shape == (1, 4)
    assert np.linalg.norm(short.vectors[0]) == pytest.approx(1.0, abs=1e-6)
    expected = full.vectors[0, :4] / np.linalg.norm(full.vectors[0, :4])
    np.testing.assert_allclose(short.vectors[0], expected, rtol=1e-5)


async def test_token_ids_are_refused_by_default() -> None:
    svc = EmbeddingService(FakeEncoder(), EmbeddingSettings())
    await svc.start()
    try:
        with pytest.raises(InvalidRequest) as info:
            await svc.embed(EmbedParams(inputs=[[5, 6, 7]]))
        assert info.value.status == 400
        assert (info.value.param, info.value.code) == ("input", "token_ids_not_accepted")
        assert info.value.message == TOKEN_IDS_REFUSED
        assert "check_embedding_ctx_length=False" in TOKEN_IDS_REFUSED
        assert svc.batcher.stats.requests == 0  # refused before reaching the engine
        text = await svc.embed(EmbedParams(inputs=["abc"]))  # text is unaffected
        assert text.vectors.shape == (1, 8)
    finally:
        await svc.stop()


async def test_token_ids_accepted_when_enabled(service: EmbeddingService) -> None:
    ids = service.encoder.tokenize(["abc"])[0]
    by_ids = await service.embed(EmbedParams(inputs=[ids]))
    by_text = await service.embed(EmbedParams(inputs=["abc"]))
    np.testing.assert_array_equal(by_ids.vectors, by_text.vectors)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, (256, 32)),  # 16,384 / 32 = 512 inputs, capped by batch_max_size
        ({"batch_max_tokens": 320, "batch_max_size": 256}, (10, 32)),
        ({"batch_max_tokens": 64, "batch_max_size": 32, "max_tokens_per_input": 8}, (8, 8)),
        ({"batch_max_tokens": 100, "batch_max_size": 2}, (2, 32)),
    ],
)
def test_largest_batch_fills_the_token_budget_with_the_longest_inputs(
    settings: dict[str, int], expected: tuple[int, int]
) -> None:
    svc = EmbeddingService(FakeEncoder(), EmbeddingSettings(**settings))
    assert svc.largest_batch() == expected


async def test_largest_batch_is_what_the_batcher_cuts_from_long_inputs() -> None:
    enc = FakeEncoder()
    settings = EmbeddingSettings(batch_max_tokens=320, batch_max_size=256)
    svc = EmbeddingService(enc, settings)
    await svc.start()
    try:
        await svc.embed(EmbedParams(inputs=["w" * 100] * 50))  # all cut to 32 tokens
    finally:
        await svc.stop()
    assert max((len(b), max(b)) for b in enc.batches) == svc.largest_batch() == (10, 32)
