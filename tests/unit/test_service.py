"""EmbeddingService: limits, truncation, prefixes, token ids and dimensions (fake model)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest

from rag_appliance.embedding.service import EmbeddingService, EmbedParams
from rag_appliance.errors import InvalidRequest, ModelNotFound
from rag_appliance.settings import EmbeddingSettings
from tests.fakes import CLS, SEP, FakeEncoder, fake_vector


@pytest.fixture
async def service() -> AsyncIterator[EmbeddingService]:
    svc = EmbeddingService(
        FakeEncoder(), EmbeddingSettings(max_inputs_per_request=4, max_tokens_per_request=100)
    )
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
