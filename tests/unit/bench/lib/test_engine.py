"""bench/lib/engine.py: the in-process sender and the engine's introspection."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.conftest import make_services, make_settings
from tests.fakes import FAKE_PROFILE, FakeEncoder


@pytest.fixture
def engine(bench_module: Any) -> Any:
    return bench_module("lib.engine")


def test_engine_sender_embeds_through_a_real_service(engine: Any) -> None:
    services = make_services(make_settings(), FakeEncoder())
    svc = services.embedding

    async def go() -> Any:
        await svc.start()
        try:
            return await engine.engine_sender(svc)(["hello", "world!"])
        finally:
            await svc.stop()

    reply = asyncio.run(go())
    assert reply.vectors.shape == (2, FAKE_PROFILE.dimension)
    np.testing.assert_allclose(np.linalg.norm(reply.vectors, axis=1), 1.0, rtol=1e-5)
    assert reply.tokens == len("hello") + len("world!") + 2 * 2  # one id per char + CLS/SEP
    assert reply.nbytes == 0


def test_attention_of_reads_the_transformer_config(engine: Any) -> None:
    @dataclass
    class Module:
        auto_model: Any

    config = SimpleNamespace(_attn_implementation="sdpa")
    encoder = SimpleNamespace(_st=[Module(SimpleNamespace(config=config))])
    services = SimpleNamespace(embedding=SimpleNamespace(encoder=encoder))
    assert engine.attention_of(services) == "sdpa"
    no_st = SimpleNamespace(embedding=SimpleNamespace(encoder=SimpleNamespace()))
    assert engine.attention_of(no_st) is None
