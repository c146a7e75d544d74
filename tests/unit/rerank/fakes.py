"""A fake pair scorer for the reranker's unit tests: word overlap instead of a model."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from rag_appliance.rerank.model import PairScores


class FakeScorer:
    """Scores a document by the share of the query's words it contains; one token a word."""

    def __init__(self, fail: bool = False, wrong_shape: bool = False) -> None:
        self.max_length = 16
        self.fail = fail
        self.wrong_shape = wrong_shape
        self.calls: list[tuple[str, list[str]]] = []
        self.threads: list[str] = []
        self.gate: threading.Event | None = None  # when set, score() waits for it
        self.entered = threading.Event()

    def score(self, query: str, documents: Sequence[str]) -> PairScores:
        self.entered.set()
        self.threads.append(threading.current_thread().name)
        if self.gate is not None:
            self.gate.wait(10)
        self.calls.append((query, list(documents)))
        if self.fail:
            raise RuntimeError("secret internal detail: CUDA exploded")
        scores = np.array([fake_score(query, d) for d in documents], dtype=np.float32)
        if self.wrong_shape:
            scores = scores[:-1]
        return PairScores(scores=scores, tokens=sum(fake_tokens(query, d) for d in documents))


def fake_score(query: str, document: str) -> float:
    """The score FakeScorer gives a pair."""
    words = set(query.lower().split())
    return len(words & set(document.lower().split())) / max(len(words), 1)


def fake_tokens(query: str, document: str) -> int:
    """The tokens FakeScorer counts for a pair: words plus three special tokens."""
    return len(query.split()) + len(document.split()) + 3
