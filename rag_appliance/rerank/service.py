"""The reranking service: limits, the model thread, ordering and usage around a pair scorer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rag_appliance.errors import EngineError, InvalidRequest, ModelNotFound, ServiceUnavailable
from rag_appliance.rerank.model import PairScores
from rag_appliance.settings import RerankSettings

log = logging.getLogger(__name__)


class PairScorer(Protocol):
    """What the service needs from a model (the real `CrossEncoderModel`, or a fake in tests)."""

    max_length: int

    def score(self, query: str, documents: Sequence[str]) -> PairScores: ...


@dataclass(frozen=True)
class RerankResult:
    """(input index, relevance score) pairs, best first, and the tokens the model processed."""

    ranking: list[tuple[int, float]]
    tokens: int


class Reranker:
    """Serves rerank calls for one cross-encoder on its own thread."""

    def __init__(self, scorer: PairScorer, settings: RerankSettings, name: str) -> None:
        self.scorer = scorer
        self.settings = settings
        self.served_name = settings.served_name or name
        self._names = {self.served_name, name, *settings.aliases}
        # One thread owns the model (not thread-safe; torch parallelises inside each pass), and
        # the event loop never waits on a forward pass.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reranker")
        self._stopped = False

    @property
    def model_names(self) -> list[str]:
        """Every name this reranker answers to, served name first."""
        return [self.served_name, *sorted(self._names - {self.served_name})]

    @property
    def candidates(self) -> int:
        """How many hits a retriever should fetch before reranking them down to top_k."""
        return self.settings.candidates

    def check_model(self, name: str | None) -> str:
        """The served name for a requested model, or a 404 model_not_found."""
        if name is None or name in self._names:
            return self.served_name
        raise ModelNotFound(
            f"The model '{name}' does not exist; this server reranks with '{self.served_name}'",
            param="model",
        )

    async def stop(self) -> None:
        """Refuse new calls with a 503 and wait for the pass in progress."""
        self._stopped = True
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)

    async def rerank(
        self, query: str, documents: Sequence[str], top_n: int | None = None
    ) -> RerankResult:
        """The top_n documents (all when None) by relevance to the query, best first."""
        if not query:
            raise InvalidRequest("'query' must not be empty", param="query")
        n, most = len(documents), self.settings.max_documents
        if n == 0:
            raise InvalidRequest("'documents' must not be empty", param="documents")
        if n > most:
            raise InvalidRequest(
                f"'documents' has {n} items; at most {most} are allowed", param="documents"
            )
        if top_n is not None and top_n < 1:
            raise InvalidRequest(f"'top_n' must be at least 1, got {top_n}", param="top_n")
        scored = await self._score(query, documents)
        return RerankResult(ranking=_ranked(scored.scores, top_n), tokens=scored.tokens)

    async def rerank_hits(
        self, query: str, texts: Sequence[str], top_k: int
    ) -> list[tuple[int, float]]:
        """For retrievers: the top_k of `texts` as (index, score), best first; [] for none."""
        if not texts:
            return []
        # The caller sized the candidate list from settings: no per-request document limit.
        scored = await self._score(query, texts)
        return _ranked(scored.scores, max(top_k, 1))

    async def _score(self, query: str, documents: Sequence[str]) -> PairScores:
        if self._stopped:
            raise ServiceUnavailable("the reranker is not running")
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, self.scorer.score, query, documents)
        except RuntimeError:  # shut down between the check and the submit
            raise ServiceUnavailable("the reranker is not running") from None
        try:
            scored = await future
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reranker forward pass failed for %d documents", len(documents))
            raise EngineError("the reranker failed on this request") from None
        if scored.scores.shape != (len(documents),):
            log.error(
                "reranker returned %s scores for %d documents", scored.scores.shape, len(documents)
            )
            raise EngineError("the reranker failed on this request")
        return scored


def _ranked(scores: np.ndarray, top: int | None) -> list[tuple[int, float]]:
    """(index, score) best first; ties keep input order, so equal scores rank stably."""
    order = np.argsort(-scores, kind="stable")
    if top is not None:
        order = order[:top]
    return [(int(i), float(scores[i])) for i in order]
