"""Integration fixtures: the real bundled model, loaded once per session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from rag_appliance.embedding.encoder import Encoder, resolve_source
from tests.conftest import live_server, make_settings


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    return Encoder(make_settings().embedding)


@pytest.fixture(scope="session")
def reference_model() -> Any:
    """sentence-transformers itself, fp32, on the same weights: the accuracy reference."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_source("all-MiniLM-L6-v2"), device="cpu")


@pytest.fixture(scope="session")
def base_url(encoder: Encoder) -> Iterator[str]:
    with live_server(make_settings(), encoder) as url:
        yield url


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.min(np.sum(a * b, axis=1)))
