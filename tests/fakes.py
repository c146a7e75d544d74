"""Fakes for unit tests only: a character-level "model" with deterministic vectors."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from rag_appliance.embedding.models import ModelProfile

FAKE_PROFILE = ModelProfile(
    name="fake-model",
    dimension=8,
    max_length=32,
    pooling="mean",
    query_prefix="q: ",
    document_prefix="d: ",
    matryoshka_dims=(4,),
    aliases=("fake-alias",),
)

CLS, SEP = 1, 2


class FakeEncoder:
    """Tokenises one id per character and maps a sequence to a unit vector of its ids."""

    def __init__(self, profile: ModelProfile = FAKE_PROFILE, fail_on: int | None = None) -> None:
        self.profile = profile
        self.max_length = profile.max_length
        self.vocab_size = 1000
        self.fail_on = fail_on
        self.batches: list[list[int]] = []  # lengths of each batch seen
        self.lock = threading.Lock()
        self.gate: threading.Event | None = None

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return [[3 + (ord(c) % 900) for c in t] for t in texts]

    def finalize(self, ids: Sequence[int], max_length: int) -> list[int]:
        return [CLS, *ids[: max_length - 2], SEP]

    def n_special(self) -> int:
        return 2

    def encode(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        if self.gate is not None:
            self.gate.wait(10)
        with self.lock:
            self.batches.append([len(s) for s in batch])
        if self.fail_on is not None and any(self.fail_on in s for s in batch):
            raise RuntimeError("secret internal detail: CUDA exploded")
        return np.stack([fake_vector(s, self.profile.dimension) for s in batch])


def fake_vector(ids: Sequence[int], dim: int) -> np.ndarray:
    """The vector FakeEncoder returns for a finalized sequence."""
    rng = np.random.default_rng(sum((i + 1) * t for i, t in enumerate(ids)))
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)
