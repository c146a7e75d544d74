"""What a search asks for, checked once for both adapters, and the parts they share.

An adapter turns a `SearchPlan` into one engine query for a given result limit and per-arm
candidate limit (its `Fetch`); `run` calls it once, or, for `group_by_document`, until enough
distinct documents came back. The weighted fusion's formula is made here too, from each arm's
best score (`weighted_terms`); an adapter only spells it in its binding. Scores per mode are
described in docs/stores.md.

Grouping is done here rather than with Qdrant's groups API, for both adapters: that API gives
up after a fixed number of internal re-queries (so it returns "up to" `top_k` groups), and it
finds further groups by re-querying without the groups already found, which changes the ranks
that RRF and DBSF fuse. Here every round is one complete query with larger limits, grouped
afterwards, so the result is exactly the best chunk of each of the first `top_k` documents in
one fused ranking.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import get_args

import numpy as np

from rag_appliance.errors import InvalidRequest
from rag_appliance.store import bm25
from rag_appliance.store.base import DOCUMENT_KEY, Bm25Config, FusionMethod, Hit, SearchMode
from rag_appliance.store.validation import check_limit, query_vector

# (result limit, candidates per arm) -> hits, best first: one engine query.
Fetch = Callable[[int, int], list[Hit]]

MODES: tuple[str, ...] = get_args(SearchMode)
FUSIONS: tuple[str, ...] = get_args(FusionMethod)
# Candidates each arm of a hybrid search passes to the fusion, unless the caller says.
PREFETCH_FACTOR = 4
MIN_PREFETCH = 40
# The first round of a grouped search fetches this many chunks per wanted document.
GROUP_FACTOR = 4
# RRF's k: Qdrant's default, which a server's plain RRF fusion uses, so both adapters agree.
RRF_K = 2
# The weighted fusion's formula variables: each arm's score, dense first.
SCORE_VARIABLES = ("$score[0]", "$score[1]")


@dataclass(frozen=True)
class SparseQuery:
    """A query's BM25 terms: term ids and weights (both adapters' sparse vector types)."""

    indices: list[int]
    values: list[float]


@dataclass(frozen=True)
class SearchPlan:
    """A checked search: the arms to run, how to fuse them and how many results to return."""

    mode: SearchMode
    top_k: int
    dense: list[float] | None  # the query vector (dense and hybrid modes)
    # The query's terms (sparse and hybrid modes); None when the text has none (all stopwords),
    # and then that arm finds nothing and is left out.
    sparse: SparseQuery | None
    fusion: FusionMethod
    dense_weight: float  # fusion "weighted" only
    prefetch_limit: int  # candidates per arm (hybrid mode)
    score_threshold: float | None
    group_by_document: bool

    @property
    def weighted(self) -> bool:
        """Whether the plan fuses by a formula over each arm's best score (fusion 'weighted')."""
        return self.mode == "hybrid" and self.fusion == "weighted"


def plan(
    collection: str,
    dimension: int,
    config: Bm25Config | None,
    vector: np.ndarray | None,
    top_k: int,
    score_threshold: float | None,
    *,
    mode: str,
    query_text: str | None,
    fusion: str,
    dense_weight: float | None,
    prefetch_limit: int | None,
    group_by_document: bool,
) -> SearchPlan:
    """The search checked against the collection (`config`: its BM25, None if dense-only)."""
    check_limit(top_k, "top_k")
    if mode not in MODES:
        raise InvalidRequest(
            f"unknown search mode {mode!r}: use one of {', '.join(MODES)}", param="mode"
        )
    if fusion not in FUSIONS:
        raise InvalidRequest(
            f"unknown fusion {fusion!r}: use one of {', '.join(FUSIONS)}", param="fusion"
        )
    if not isinstance(group_by_document, bool):
        raise InvalidRequest("group_by_document must be true or false", param="group_by_document")
    threshold = _threshold(score_threshold)
    weight = _dense_weight(dense_weight, mode, fusion)
    if prefetch_limit is None:
        candidates = max(PREFETCH_FACTOR * top_k, MIN_PREFETCH)
    else:
        # Fewer candidates than results would cut the fused list short of top_k.
        candidates = max(check_limit(prefetch_limit, "prefetch_limit"), top_k)
    dense = None
    if mode != "sparse":
        if vector is None:
            raise InvalidRequest(f"a {mode} search needs a query vector", param="vector")
        dense = query_vector(vector, dimension, collection)
    sparse = None
    if mode != "dense":
        if config is None:
            raise InvalidRequest(
                f"collection {collection!r} has no BM25 sparse vectors (it was created before "
                f"they existed), so it supports only mode 'dense', not {mode!r}. To search it "
                "with BM25, create a new collection and index its documents again.",
                param="mode",
            )
        if not isinstance(query_text, str):
            raise InvalidRequest(f"a {mode} search needs the query text", param="query_text")
        terms = bm25.query_vector(config, query_text)
        if terms.indices:
            sparse = SparseQuery(list(terms.indices), list(terms.values))
    return SearchPlan(
        mode=mode,  # type: ignore[arg-type]  # checked against MODES above
        top_k=top_k,
        dense=dense,
        sparse=sparse,
        fusion=fusion,  # type: ignore[arg-type]  # checked against FUSIONS above
        dense_weight=weight,
        prefetch_limit=candidates,
        score_threshold=threshold,
        group_by_document=group_by_document,
    )


def run(search: SearchPlan, fetch: Fetch) -> list[Hit]:
    """The plan's hits: one fetch, or rounds of them until top_k documents are found."""
    if search.mode == "sparse" and search.sparse is None:
        return []  # no term to match
    if not search.group_by_document:
        return fetch(search.top_k, search.prefetch_limit)
    limit = GROUP_FACTOR * search.top_k
    while True:
        hits = fetch(limit, max(search.prefetch_limit, limit))
        best = best_per_document(hits)
        # Fewer hits than asked for: every matching chunk is in (each arm ran dry).
        if len(best) >= search.top_k or len(hits) < limit:
            return best[: search.top_k]
        # Grow by the chunks per document seen so far (at least double) to need few rounds.
        per_document = len(hits) / max(1, len(best))
        limit = max(2 * limit, math.ceil(1.5 * per_document * search.top_k))


def best_per_document(hits: list[Hit]) -> list[Hit]:
    """The first (best) hit of each document, in rank order; hits without a doc_id are left
    out (as Qdrant's grouping leaves out points without the key)."""
    seen: set[str | int] = set()
    best = []
    for hit in hits:
        doc = hit.payload.get(DOCUMENT_KEY)
        if isinstance(doc, bool) or not isinstance(doc, str | int) or doc in seen:
            continue
        seen.add(doc)
        best.append(hit)
    return best


def weighted_coefficients(
    dense_weight: float, best_dense: float | None, best_sparse: float | None
) -> tuple[float, float]:
    """The factors of the dense and the BM25 score in a weighted fusion.

    Each arm's score is divided by that arm's best score for the query and filter, so that the
    best chunk of each arm counts 1, then weighted w and 1 - w. A best dense score <= 0 (no
    chunk points the query's way) is left undivided, which keeps the dense order.
    """
    dense = dense_weight / best_dense if best_dense is not None and best_dense > 0 else dense_weight
    sparse_weight = 1.0 - dense_weight
    sparse = (
        sparse_weight / best_sparse
        if best_sparse is not None and best_sparse > 0
        else sparse_weight
    )
    return dense, sparse


def weighted_terms(
    search: SearchPlan, best: Sequence[float | None]
) -> tuple[list[tuple[float, str]], dict[str, float]]:
    """A weighted fusion's formula: the (factor, score variable) products to sum, one per arm of
    the plan, and each variable's default, from `best`: each arm's best score for the query and
    filter (dense first; None where an arm found nothing). The adapters spell it in their
    binding's expressions."""
    best_sparse = best[1] if len(best) > 1 else None
    dense_factor, sparse_factor = weighted_coefficients(search.dense_weight, best[0], best_sparse)
    dense_score, sparse_score = SCORE_VARIABLES
    terms = [(dense_factor, dense_score)]
    if search.sparse is not None:
        terms.append((sparse_factor, sparse_score))
    # A chunk that only one arm found scores 0 in the other one.
    return terms, dict.fromkeys(SCORE_VARIABLES, 0.0)


def _threshold(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequest("score_threshold must be a finite number", param="score_threshold")
    return float(value)


def _dense_weight(value: float | None, mode: str, fusion: str) -> float:
    if value is None:
        return 0.5
    if mode != "hybrid" or fusion != "weighted":
        # Refused rather than ignored: the caller expects it to change the ranking.
        raise InvalidRequest(
            "dense_weight applies only to mode 'hybrid' with fusion 'weighted'",
            param="dense_weight",
        )
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and 0.0 <= value <= 1.0)
    ):
        raise InvalidRequest("dense_weight must be a number from 0 to 1", param="dense_weight")
    return float(value)
