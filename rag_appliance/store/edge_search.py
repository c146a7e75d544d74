"""The embedded store's searches: a `SearchPlan` as qdrant-edge queries on one shard (dense,
sparse, hybrid with RRF, DBSF or the weighted formula), run through search.run (which does the
grouping)."""

from __future__ import annotations

from typing import cast

import qdrant_edge as qe

from rag_appliance.store.base import Hit
from rag_appliance.store.bm25 import VECTOR as SPARSE
from rag_appliance.store.edge_config import EdgeTuning
from rag_appliance.store.search import RRF_K, SearchPlan, weighted_terms
from rag_appliance.store.search import run as run_search


def search(
    shard: qe.EdgeShard, plan: SearchPlan, selector: qe.Filter | None, tuning: EdgeTuning
) -> list[Hit]:
    """The plan's hits on `shard` (collection lock held), each arm filtered by `selector`, the
    dense arm with the HNSW ef and rescoring `tuning` chooses for the shard's size."""
    points = shard.info().points_count
    formula = _formula(shard, plan, selector, tuning, points) if plan.weighted else None

    def fetch(limit: int, candidates: int) -> list[Hit]:
        dense_limit = candidates if plan.mode == "hybrid" else limit
        params = tuning.search_params(points, dense_limit)
        scored = shard.query(_request(plan, selector, limit, candidates, formula, params))
        return [Hit(str(p.id), float(p.score), p.payload or {}) for p in scored]

    return run_search(plan, fetch)


Arm = tuple[qe.Query, qe.Filter | None, int, qe.SearchParams | None]


def _arms(
    plan: SearchPlan, selector: qe.Filter | None, limit: int, params: qe.SearchParams
) -> list[Arm]:
    """The plan's queries (dense first, with `params`), each with the filter and a limit."""
    arms: list[Arm] = []
    if plan.dense is not None:
        arms.append((qe.Query.Nearest(plan.dense), selector, limit, params))
    if plan.sparse is not None:
        terms = qe.SparseVector(plan.sparse.indices, plan.sparse.values)
        arms.append((qe.Query.Nearest(terms, using=SPARSE), selector, limit, None))
    return arms


def _request(
    plan: SearchPlan,
    selector: qe.Filter | None,
    limit: int,
    candidates: int,
    formula: qe.Formula | None,
    params: qe.SearchParams,
) -> qe.QueryRequest:
    """One engine query for the plan: `limit` results from `candidates` per hybrid arm."""
    if plan.mode != "hybrid":
        ((query, flt, _, arm_params),) = _arms(plan, selector, limit, params)
        return qe.QueryRequest(
            limit=limit,
            query=query,
            filter=flt,
            params=arm_params,
            score_threshold=plan.score_threshold,
            with_payload=True,
            with_vector=False,
        )
    # The stubs declare the fusions as classes nested in Fusion, not as Fusion values.
    fused: qe.ScoringQueryType
    if plan.fusion == "rrf":
        fused = cast(qe.Fusion, qe.Fusion.Rrf(k=RRF_K))
    elif plan.fusion == "dbsf":
        fused = cast(qe.Fusion, qe.Fusion.Dbsf())
    else:
        assert formula is not None
        fused = formula
    arms = _arms(plan, selector, candidates, params)
    return qe.QueryRequest(
        limit=limit,
        # The filter goes to each arm, so every candidate of either arm satisfies it.
        prefetches=[qe.Prefetch(n, query=q, filter=f, params=p) for q, f, n, p in arms],
        query=fused,
        score_threshold=plan.score_threshold,
        with_payload=True,
        with_vector=False,
    )


def _formula(
    shard: qe.EdgeShard,
    plan: SearchPlan,
    selector: qe.Filter | None,
    tuning: EdgeTuning,
    points: int,
) -> qe.Formula:
    """The weighted fusion of the plan's arms, normalised by each arm's best score."""
    arms = _arms(plan, selector, 1, tuning.search_params(points, 1))
    best = shard.query_batch(
        qe.QueryBatchRequest(
            [qe.QueryRequest(limit=1, query=q, filter=f, params=p) for q, f, _, p in arms]
        )
    )
    tops = [float(hits[0].score) if hits else None for hits in best]
    terms, defaults = weighted_terms(plan, tops)
    E = qe.Expression
    products = [E.Mult([E.Constant(factor), E.Variable(score)]) for factor, score in terms]
    return qe.Formula(E.Sum(products), defaults=defaults)
