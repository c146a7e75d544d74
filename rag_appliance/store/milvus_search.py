"""The Milvus adapter's searches: a `SearchPlan` as Milvus searches, each arm filtered, fused on
the client, run through search.run (which does the grouping).

- Dense: a COSINE search of `vector`; the score is the cosine similarity.
- BM25: Milvus' own BM25 (a BM25 Function over an analysed VARCHAR) cannot be used: its
  analyser is not our tokeniser (bm25.py), it normalises by the collection's measured average
  length instead of the configured `avg_len`, and Milvus Lite keeps its IDF per segment. So the
  points keep our term-frequency vectors in a plain sparse field (IP metric) and the query's
  terms are weighted by Qdrant's IDF, computed here: N is the number of points with terms, and
  each term's document frequency is the number of hits of a search for that term alone (one
  batched search; a term in more than 16384 points, Milvus' largest limit, is counted with
  `array_contains` on the `terms` field). The IP score is then exactly Qdrant's BM25 score.
- Hybrid: both arms are searched with `prefetch_limit` candidates and fused here as Qdrant fuses
  them (RRF with k = 2, DBSF with mean +- 3 sample standard deviations and 0.5 for a lone or
  constant arm, the weighted formula of search.weighted_terms with each arm's top score as its
  best), so the scores are the other adapters'. Milvus' own rankers differ: its RRFRanker has
  k = 60 by default and counts ranks from 1, its WeightedRanker normalises with arctan.

`score_threshold` applies to the final (fused) score: `score >= threshold`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rag_appliance.store.base import Hit
from rag_appliance.store.milvus_client import MAX_LIMIT, MilvusConn
from rag_appliance.store.milvus_rows import (
    HAS_TERMS,
    ID,
    PAYLOAD,
    SPARSE,
    TERMS,
    VECTOR,
    idf,
    query_terms,
    stored_payload,
)
from rag_appliance.store.milvus_schema import SPARSE_PARAMS, dense_params
from rag_appliance.store.search import RRF_K, SCORE_VARIABLES, SearchPlan, weighted_terms
from rag_appliance.store.search import run as run_search


def search(conn: MilvusConn, name: str, plan: SearchPlan, expr: str) -> list[Hit]:
    """The plan's hits in collection `name`, each arm filtered by `expr`."""
    # The query's BM25 weights are computed once, whatever the rounds of a grouped search.
    weights = idf_weights(conn, name, plan.sparse.indices) if plan.sparse is not None else {}

    def fetch(limit: int, candidates: int) -> list[Hit]:
        if plan.mode == "dense":
            hits = _dense(conn, name, plan, expr, limit)
        elif plan.mode == "sparse":
            hits = _sparse(conn, name, weights, expr, limit)
        else:
            arms = [_dense(conn, name, plan, expr, candidates)]
            if plan.sparse is not None:
                arms.append(_sparse(conn, name, weights, expr, candidates))
            hits = fuse(plan, arms)
        if plan.score_threshold is not None:
            hits = [h for h in hits if h.score >= plan.score_threshold]
        return hits[:limit]

    return run_search(plan, fetch)


def idf_weights(conn: MilvusConn, name: str, indices: Sequence[int]) -> dict[int, float]:
    """Each query term found in the collection, weighted by its IDF over every point with
    terms (whatever the filter: committed or not, as on Qdrant)."""
    terms = query_terms(indices)
    total = conn.count(name)
    with_terms = total - conn.count(name, f"{HAS_TERMS} == false") if total else 0
    if with_terms <= 0 or not terms:
        return {}
    results = conn.search(
        name,
        [{t: 1.0} for t in terms],
        SPARSE,
        min(with_terms, MAX_LIMIT),
        "",
        output_fields=[ID],
        search_params=SPARSE_PARAMS,
    )
    weights = {}
    for term, hits in zip(terms, results, strict=True):
        found = len(hits)
        if found >= MAX_LIMIT:  # maybe cut off at the limit: count exactly
            found = conn.count(name, f"array_contains({TERMS}, {term})")
        if found:
            weights[term] = idf(with_terms, found)
    return weights


def fuse(plan: SearchPlan, arms: list[list[Hit]]) -> list[Hit]:
    """A hybrid plan's arms (dense first) fused into one ranking, best first."""
    if plan.fusion == "rrf":
        parts = [{h.id: 1.0 / (RRF_K + rank) for rank, h in enumerate(arm)} for arm in arms]
    elif plan.fusion == "dbsf":
        parts = [_distribution_normalised(arm) for arm in arms]
    else:
        best = [arm[0].score if arm else None for arm in arms]
        terms, _ = weighted_terms(plan, best)
        factors = {SCORE_VARIABLES.index(variable): factor for factor, variable in terms}
        # A chunk that only one arm found scores 0 in the other one.
        parts = [{h.id: factors.get(i, 0.0) * h.score for h in arm} for i, arm in enumerate(arms)]
    payloads: dict[str, dict[str, Any]] = {}
    for arm in arms:
        for hit in arm:
            payloads.setdefault(hit.id, hit.payload)
    scores = {i: sum(part.get(i, 0.0) for part in parts) for i in payloads}
    # Stable: equal scores keep the order the arms found them in, dense first.
    ranked = sorted(payloads, key=lambda i: -scores[i])
    return [Hit(i, scores[i], payloads[i]) for i in ranked]


def _distribution_normalised(arm: list[Hit]) -> dict[str, float]:
    """One arm's scores mapped to 0..1 by mean +- 3 sample standard deviations (Qdrant's DBSF:
    0.5 for a lone candidate or when every score is equal)."""
    if len(arm) < 2:
        return {h.id: 0.5 for h in arm}
    scores = [h.score for h in arm]
    mean = sum(scores) / len(scores)
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / (len(scores) - 1))
    if std == 0:
        return {h.id: 0.5 for h in arm}
    low, spread = mean - 3 * std, 6 * std
    return {h.id: (h.score - low) / spread for h in arm}


def _dense(conn: MilvusConn, name: str, plan: SearchPlan, expr: str, limit: int) -> list[Hit]:
    """The dense arm: the `limit` nearest points by cosine."""
    assert plan.dense is not None
    (found,) = conn.search(
        name,
        [plan.dense],
        VECTOR,
        limit,
        expr,
        output_fields=[PAYLOAD],
        search_params=dense_params(conn, limit),
    )
    return _hits(found)


def _sparse(
    conn: MilvusConn, name: str, weights: dict[int, float], expr: str, limit: int
) -> list[Hit]:
    """The BM25 arm: the `limit` best points by IDF-weighted term weights (IP)."""
    if not weights:  # no query term is in the collection
        return []
    (found,) = conn.search(
        name, [weights], SPARSE, limit, expr, output_fields=[PAYLOAD], search_params=SPARSE_PARAMS
    )
    return _hits(found)


def _hits(found: list[Any]) -> list[Hit]:
    """Milvus search results as hits, payloads decoded."""
    return [Hit(str(h["id"]), float(h["distance"]), stored_payload(h["entity"])) for h in found]
