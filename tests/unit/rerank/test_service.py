"""Reranker: ordering, top_n, limits, names, the model thread and failures, on a fake scorer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rag_appliance.errors import EngineError, InvalidRequest, ModelNotFound, ServiceUnavailable
from rag_appliance.rerank.service import Reranker
from rag_appliance.settings import RerankSettings
from tests.unit.rerank.fakes import FakeScorer, fake_score, fake_tokens

QUERY = "capital of france"
DOCS = [
    "Berlin is a city",  # 0
    "Paris is the capital of France",  # 3/3
    "the capital of Spain",  # 2/3
    "France has wine",  # 1/3
]


def make(scorer: FakeScorer | None = None, **settings: Any) -> Reranker:
    return Reranker(scorer or FakeScorer(), RerankSettings(**settings), "fake-reranker")


@pytest.fixture
async def reranker() -> AsyncIterator[Reranker]:
    service = make(aliases=["fake-alias"], max_documents=5)
    yield service
    await service.stop()


async def test_ranks_all_documents_best_first_with_input_indexes(reranker: Reranker) -> None:
    result = await reranker.rerank(QUERY, DOCS)
    assert [i for i, _ in result.ranking] == [1, 2, 3, 0]
    for index, score in result.ranking:
        assert score == pytest.approx(fake_score(QUERY, DOCS[index]))
    assert result.tokens == sum(fake_tokens(QUERY, d) for d in DOCS)


async def test_top_n_cuts_and_a_large_top_n_returns_everything(reranker: Reranker) -> None:
    top = await reranker.rerank(QUERY, DOCS, top_n=2)
    assert [i for i, _ in top.ranking] == [1, 2]
    # Every pair is scored whatever top_n is: usage counts them all.
    assert top.tokens == sum(fake_tokens(QUERY, d) for d in DOCS)
    everything = await reranker.rerank(QUERY, DOCS, top_n=50)
    assert [i for i, _ in everything.ranking] == [1, 2, 3, 0]


async def test_equal_scores_keep_input_order(reranker: Reranker) -> None:
    result = await reranker.rerank("zebra", ["a", "b zebra", "c", "zebra d"])
    assert [i for i, _ in result.ranking] == [1, 3, 0, 2]


@pytest.mark.parametrize(
    ("query", "documents", "top_n", "param", "fragment"),
    [
        ("", DOCS, None, "query", "must not be empty"),
        (QUERY, [], None, "documents", "must not be empty"),
        (QUERY, ["d"] * 6, None, "documents", "has 6 items; at most 5"),
        (QUERY, DOCS, 0, "top_n", "at least 1"),
        (QUERY, DOCS, -3, "top_n", "at least 1"),
    ],
)
async def test_bad_calls_are_400s_naming_the_parameter(
    reranker: Reranker,
    query: str,
    documents: list[str],
    top_n: int | None,
    param: str,
    fragment: str,
) -> None:
    scorer = reranker.scorer
    assert isinstance(scorer, FakeScorer)
    with pytest.raises(InvalidRequest) as info:
        await reranker.rerank(query, documents, top_n)
    assert info.value.status == 400
    assert info.value.param == param
    assert fragment in info.value.message
    assert scorer.calls == []  # refused before any pass


async def test_the_document_limit_is_inclusive(reranker: Reranker) -> None:
    result = await reranker.rerank(QUERY, ["d"] * 5)
    assert len(result.ranking) == 5


def test_model_names_and_check_model() -> None:
    service = make(aliases=["other"], served_name="served")
    assert service.model_names == ["served", "fake-reranker", "other"]
    assert service.check_model(None) == "served"
    assert service.check_model("other") == "served"
    assert service.check_model("fake-reranker") == "served"
    with pytest.raises(ModelNotFound) as info:
        service.check_model("nope")
    assert (info.value.status, info.value.param, info.value.code) == (
        404,
        "model",
        "model_not_found",
    )
    assert "'served'" in info.value.message


def test_the_served_name_defaults_to_the_model_name() -> None:
    assert make().served_name == "fake-reranker"
    assert make().model_names == ["fake-reranker"]


async def test_scoring_runs_on_the_reranker_thread_and_the_loop_stays_free() -> None:
    scorer = FakeScorer()
    scorer.gate = threading.Event()
    service = make(scorer)
    task = asyncio.create_task(service.rerank(QUERY, DOCS))
    await asyncio.to_thread(scorer.entered.wait, 5)
    # The pass is blocked on its thread; the event loop still runs other coroutines.
    ticks = 0
    for _ in range(5):
        await asyncio.sleep(0)
        ticks += 1
    assert ticks == 5 and not task.done()
    scorer.gate.set()
    result = await asyncio.wait_for(task, 5)
    assert result.ranking[0][0] == 1
    assert scorer.threads and all(t.startswith("reranker") for t in scorer.threads)
    await service.stop()


async def test_a_failing_model_is_a_500_without_internals() -> None:
    service = make(FakeScorer(fail=True))
    with pytest.raises(EngineError) as info:
        await service.rerank(QUERY, DOCS)
    assert info.value.status == 500
    assert "CUDA" not in info.value.message
    await service.stop()


async def test_a_score_count_mismatch_is_a_500() -> None:
    service = make(FakeScorer(wrong_shape=True))
    with pytest.raises(EngineError):
        await service.rerank(QUERY, DOCS)
    await service.stop()


async def test_after_stop_calls_get_a_503() -> None:
    service = make()
    await service.stop()
    with pytest.raises(ServiceUnavailable) as info:
        await service.rerank(QUERY, DOCS)
    assert info.value.status == 503
    with pytest.raises(ServiceUnavailable):
        await service.rerank_hits(QUERY, DOCS, 2)


async def test_rerank_hits_for_the_retriever() -> None:
    scorer = FakeScorer()
    service = make(scorer, max_documents=2, candidates=7)
    assert service.candidates == 7
    # The retriever's candidate list is not a client request: max_documents does not apply.
    hits = await service.rerank_hits(QUERY, DOCS, top_k=3)
    assert [i for i, _ in hits] == [1, 2, 3]
    assert hits[0][1] == pytest.approx(1.0)
    assert await service.rerank_hits(QUERY, DOCS, top_k=10) == await service.rerank_hits(
        QUERY, DOCS, top_k=4
    )
    calls = len(scorer.calls)
    assert await service.rerank_hits(QUERY, [], top_k=3) == []
    assert len(scorer.calls) == calls  # nothing to score: no pass
    await service.stop()
