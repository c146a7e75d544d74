"""The server adapter's searches: a `SearchPlan` as qdrant-client queries (dense, sparse, hybrid
with RRF, DBSF or the weighted formula), run through search.run (which does the grouping), and a
server's 400 for a feature it lacks as an InvalidRequest naming the backend."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

from rag_appliance.errors import InvalidRequest
from rag_appliance.store.base import Hit
from rag_appliance.store.bm25 import VECTOR as SPARSE
from rag_appliance.store.search import SearchPlan, weighted_terms
from rag_appliance.store.search import run as run_search
from rag_appliance.store.server_client import ServerClient


def search(
    conn: ServerClient, name: str, plan: SearchPlan, selector: models.Filter | None
) -> list[Hit]:
    """The plan's hits in collection `name`, each arm filtered by `selector`."""
    full = conn.full(name)
    with refused(plan):
        formula = _formula(conn, name, plan, selector) if plan.weighted else None

        def fetch(limit: int, candidates: int) -> list[Hit]:
            if plan.mode == "hybrid":
                arms = _arms(plan, selector, candidates)
                query = _fusion(plan, formula)
                kwargs: dict[str, Any] = {"prefetch": arms, "query": query}
            else:
                (arm,) = _arms(plan, selector, limit)
                kwargs = {"query": arm.query, "using": arm.using, "query_filter": arm.filter}
            with conn.call(name):
                response = conn.client.query_points(
                    full,
                    limit=limit,
                    score_threshold=plan.score_threshold,
                    with_payload=True,
                    with_vectors=False,
                    **kwargs,
                )
            return [Hit(str(p.id), float(p.score), p.payload or {}) for p in response.points]

        return run_search(plan, fetch)


@contextlib.contextmanager
def refused(plan: SearchPlan) -> Iterator[None]:
    """A server's 400 for a sparse or hybrid query as an InvalidRequest naming the backend.

    Our arguments are checked before they are sent, so such a 400 means that the server
    lacks the feature (an older Qdrant).
    """
    try:
        yield
    except UnexpectedResponse as exc:
        if exc.status_code != 400 or plan.mode == "dense":
            raise
        what = f"fusion {plan.fusion!r}" if plan.mode == "hybrid" else "sparse vectors"
        raise InvalidRequest(
            f"the qdrant_server backend refused a {plan.mode} search ({what}): "
            f"{_server_error(exc)}. Sparse and hybrid search need Qdrant 1.10 or later, "
            "fusion 'dbsf' 1.11 and fusion 'weighted' 1.14.",
            param="mode" if plan.mode == "sparse" else "fusion",
        ) from None


def _formula(
    conn: ServerClient, name: str, plan: SearchPlan, selector: models.Filter | None
) -> models.FormulaQuery:
    """The weighted fusion of the plan's arms, normalised by each arm's best score."""
    requests = [
        models.QueryRequest(query=a.query, using=a.using, filter=a.filter, limit=1)
        for a in _arms(plan, selector, 1)
    ]
    with conn.call(name):
        best = conn.client.query_batch_points(conn.full(name), requests=requests)
    tops = [float(r.points[0].score) if r.points else None for r in best]
    terms, defaults = weighted_terms(plan, tops)
    products: list[models.Expression] = [
        models.MultExpression(mult=[factor, score]) for factor, score in terms
    ]
    return models.FormulaQuery(formula=models.SumExpression(sum=products), defaults=defaults)


def _arms(plan: SearchPlan, selector: models.Filter | None, limit: int) -> list[models.Prefetch]:
    """The plan's queries (dense first), each with the filter and a limit."""
    arms = []
    if plan.dense is not None:
        arms.append(models.Prefetch(query=plan.dense, filter=selector, limit=limit))
    if plan.sparse is not None:
        terms = models.SparseVector(indices=plan.sparse.indices, values=plan.sparse.values)
        arms.append(models.Prefetch(query=terms, using=SPARSE, filter=selector, limit=limit))
    return arms


def _fusion(plan: SearchPlan, formula: models.FormulaQuery | None) -> models.Query:
    """The query fusing a hybrid plan's arms."""
    if plan.fusion == "rrf":
        # Qdrant's default k (search.RRF_K), which every server with RRF supports.
        return models.FusionQuery(fusion=models.Fusion.RRF)
    if plan.fusion == "dbsf":
        return models.FusionQuery(fusion=models.Fusion.DBSF)
    assert formula is not None
    return formula


def _server_error(exc: UnexpectedResponse) -> str:
    """The error message in a Qdrant error answer (its raw text if it has none)."""
    with contextlib.suppress(Exception):
        return str(exc.structured()["status"]["error"])
    return exc.content.decode(errors="replace")[:500]
