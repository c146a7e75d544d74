"""bench/seed_server.py: the seed document's handler, kept as the seed wrote it."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi.testclient import TestClient


class FakeModel:
    """`encode` as sentence-transformers has it: one unit row per text."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def encode(self, texts: list[str], **kwargs: Any) -> np.ndarray:
        self.calls.append(kwargs)
        return np.tile(np.array([0.6, 0.8], dtype=np.float32), (len(texts), 1))


def test_the_seed_handler_answers_a_bare_list(bench_module: Any) -> None:
    seed = bench_module("seed_server")
    model = FakeModel()
    client = TestClient(seed.build_app(model, "bge-large"))
    response = client.post("/v1/embeddings", json=["one two", "three"])
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "bge-large"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert body["data"][0]["embedding"] == [np.float32(0.6).item(), np.float32(0.8).item()]
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}  # whitespace words
    assert model.calls == [
        {"normalize_embeddings": True, "batch_size": 256, "show_progress_bar": False}
    ]
