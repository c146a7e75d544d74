"""The pgvector adapter's searches: a `SearchPlan` as SQL arms, fused here, run through
search.run (which does the grouping). The caller holds one REPEATABLE READ, read-only
transaction around the whole search, so every arm, the BM25 statistics and each grouping round
see the same snapshot (a document replaced meanwhile is either all old or all new).

- dense: `ORDER BY embedding <=> q LIMIT n`, score `1 - cosine distance`: exact below the HNSW
  threshold, else one sub-query per segment (its partial HNSW index, with pgvector's iterative
  scan so that a filter does not cut the result short) and one exact over the rows after the
  last segment, merged (see dense_query and pg_hnsw);
- sparse: BM25 over the PostgreSQL full-text index. The query's lexemes (the collection's text
  search configuration, distinct) are OR-ed into one tsquery, so any term may match, and the
  GIN index finds the chunks holding one. Each is scored
  sum over its query lexemes of idf * tf * (k + 1) / (tf + k * (1 - b + b * len / avg_len)),
  tf the lexeme's positions in the chunk, len all its positions (tsv_len), and Qdrant's
  idf = ln(1 + (N - n + 0.5) / (n + 0.5)) over the whole collection (N chunks with terms, n with
  the lexeme), the formula the Qdrant adapters compute. Not ts_rank_cd: it has no IDF, so a
  rare term would weigh no more than a common one (docs/stores.md);
- hybrid: both arms with `prefetch_limit` candidates each, fused like Qdrant fuses them (RRF
  with k = 2, DBSF as qdrant-client computes it, or search.weighted_terms' formula), then the
  payloads of the results read by id.

Ties are broken by id, so that a grouping round and a longer ranking agree on the order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from psycopg import sql

from rag_appliance.store.base import Hit
from rag_appliance.store.pg_filters import Condition
from rag_appliance.store.pg_sql import Cursor, Meta, seg_range, tokenise
from rag_appliance.store.search import RRF_K, SearchPlan, SparseQuery, weighted_terms
from rag_appliance.store.search import run as run_search

# pgvector's hnsw.ef_search bounds (the candidates of one HNSW scan round).
EF_SEARCH_MIN, EF_SEARCH_MAX = 40, 1000
# (id, score) pairs of one arm, best first.
Scored = list[tuple[str, float]]


def search(
    cur: Cursor,
    schema: str,
    meta: Meta,
    plan: SearchPlan,
    condition: Condition,
    query_text: str | None,
    *,
    iterative_scan: bool,
) -> list[Hit]:
    """The plan's hits in `meta`'s table, each arm filtered by `condition`."""
    table = sql.Identifier(schema, meta.table)
    terms: Bm25Terms | None = None
    if plan.mode != "dense":
        # plan() checked that the collection has BM25 and that the text is a string.
        assert meta.ts_config is not None and isinstance(query_text, str)
        terms = bm25_terms(cur, table, meta.ts_config, query_text)
        # Whether the BM25 arm runs follows this tokeniser, not the other adapters'.
        plan = replace(plan, sparse=SparseQuery([], []) if terms.lexemes else None)
    dense = None if plan.dense is None else np.asarray(plan.dense, dtype=np.float32)
    if dense is not None and iterative_scan:
        # pgvector 0.8: the HNSW scan goes on until `limit` rows pass the filter (by default it
        # stops after ef_search candidates, filtered or not), keeping the distance order.
        cur.execute("SELECT set_config('hnsw.iterative_scan', 'strict_order', true)")

    def dense_arm(limit: int, payloads: bool) -> list[tuple[Any, ...]]:
        ef = min(EF_SEARCH_MAX, max(EF_SEARCH_MIN, limit))
        cur.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef),))
        query = dense_query(table, meta, condition, payloads)
        return cur.execute(query, {**condition.params, "q": dense, "n": limit}).fetchall()

    def sparse_arm(limit: int, payloads: bool) -> list[tuple[Any, ...]]:
        assert terms is not None and meta.bm25 is not None
        config = meta.bm25
        # The candidate's query lexemes alone, with their positions: marked with weight A and
        # filtered on it (two C passes over the tsvector, not a row per lexeme).
        query = sql.SQL(
            "SELECT t.id, s.score{} FROM {} t "
            "CROSS JOIN LATERAL (SELECT sum(w.idf * f.tf * {k1} / (f.tf + {k} * "
            "({b0} + {b} * t.tsv_len / {avg}))) AS score "
            "FROM (SELECT lexeme, cardinality(positions)::float8 AS tf "
            "FROM unnest(ts_filter(setweight(t.tsv, 'A', %(lexemes)s::text[]), '{{a}}'))) f "
            "JOIN unnest(%(lexemes)s::text[], %(idf)s::float8[]) AS w(lexeme, idf) "
            "ON w.lexeme = f.lexeme) s "
            "WHERE t.tsv @@ %(query)s::tsquery AND {} "
            "ORDER BY s.score DESC, t.id LIMIT %(n)s"
        ).format(
            sql.SQL(", t.payload") if payloads else sql.SQL(""),
            table,
            condition.sql,
            k1=sql.Literal(float(config.k) + 1.0),
            k=sql.Literal(float(config.k)),
            b0=sql.Literal(1.0 - float(config.b)),
            b=sql.Literal(float(config.b)),
            avg=sql.Literal(float(config.avg_len)),
        )
        params = {
            **condition.params,
            "lexemes": terms.lexemes,
            "idf": terms.idf,
            "query": terms.tsquery,
            "n": limit,
        }
        return cur.execute(query, params).fetchall()

    def fetch(limit: int, candidates: int) -> list[Hit]:
        if plan.mode != "hybrid":
            arm = dense_arm if plan.mode == "dense" else sparse_arm
            hits = [Hit(str(i), _score(s), p) for i, s, p in arm(limit, True)]
            # The index orders by distance alone: equal scores by id, as the BM25 arm does.
            hits.sort(key=lambda h: (-h.score, h.id))
            return _threshold(hits, plan)
        arms: list[Scored] = []
        if plan.dense is not None:
            dense_hits = [(str(i), _score(s)) for i, s in dense_arm(candidates, False)]
            arms.append(sorted(dense_hits, key=_best_first))
        if plan.sparse is not None:
            arms.append([(str(i), float(s)) for i, s in sparse_arm(candidates, False)])
        fused = _threshold(_fuse(plan, arms), plan)[:limit]
        return _with_payloads(cur, table, fused)

    return run_search(plan, fetch)


def dense_query(
    table: sql.Composable, meta: Meta, condition: Condition, payloads: bool
) -> sql.Composed:
    """The dense arm: (id, cosine[, payload]) of the `%(n)s` rows nearest `%(q)s` that pass
    `condition`, nearest first. On a table with segments (pg_hnsw), each segment's rows are
    one sub-query that its partial HNSW index answers (the seg range is the index's predicate),
    the rows after the last segment one exact sub-query, and the nearest of all win: each
    sub-query is exact on its rows whatever index serves it, so any snapshot of the segment
    list gives the right rows."""
    columns = sql.SQL(", payload") if payloads else sql.SQL("")
    if not meta.segments:  # one arm: exact, or the single index of a table made before segments
        return sql.SQL(
            "SELECT id, 1 - (embedding <=> %(q)s){} FROM {} WHERE {} "
            "ORDER BY embedding <=> %(q)s LIMIT %(n)s"
        ).format(columns, table, condition.sql)
    ranges = [seg_range(s.first, s.last) for s in meta.segments] + [seg_range(meta.tail, None)]
    arms = [
        sql.SQL(
            "(SELECT id, embedding <=> %(q)s AS d{} FROM {} WHERE {} AND {} "
            "ORDER BY embedding <=> %(q)s LIMIT %(n)s)"
        ).format(columns, table, rows, condition.sql)
        for rows in ranges
    ]
    return sql.SQL("SELECT id, 1 - d{} FROM ({}) AS u ORDER BY d, id LIMIT %(n)s").format(
        columns, sql.SQL(" UNION ALL ").join(arms)
    )


class Bm25Terms:
    """A query's lexemes, their IDF in the collection and the tsquery matching any of them."""

    def __init__(self, lexemes: list[str], idf: list[float]) -> None:
        self.lexemes = lexemes
        self.idf = idf
        # OR: any term may match, as in BM25 (plainto_ and websearch_to_tsquery AND them).
        self.tsquery = " | ".join(map(quoted_lexeme, lexemes))


def quoted_lexeme(lexeme: str) -> str:
    """A lexeme as tsquery input takes it verbatim: quoted, quotes and backslashes doubled."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def bm25_terms(cur: Cursor, table: sql.Composable, ts_config: str, text: str) -> Bm25Terms:
    """The distinct lexemes of `text` under the collection's configuration, with Qdrant's IDF
    over the whole collection (whatever the filter, as Qdrant counts it)."""
    lexemes = cur.execute(
        sql.SQL(
            "SELECT coalesce(array_agg(lexeme ORDER BY lexeme), '{{}}') FROM unnest({})"
        ).format(tokenise(sql.SQL("%s::regconfig"), sql.SQL("%s"))),
        (ts_config, text),
    ).fetchone()
    found: list[str] = lexemes[0] if lexemes else []
    if not found:
        return Bm25Terms([], [])
    row = cur.execute(
        sql.SQL(
            "SELECT (SELECT count(*) FROM {t} WHERE tsv_len > 0), "
            "ARRAY(SELECT (SELECT count(*) FROM {t} WHERE tsv @@ q.query) "
            "FROM unnest(%s::tsquery[]) WITH ORDINALITY AS q(query, i) ORDER BY q.i)"
        ).format(t=table),
        ([quoted_lexeme(x) for x in found],),
    ).fetchone()
    assert row is not None
    total, counts = int(row[0]), [int(n) for n in row[1]]
    idf = [math.log(1 + (total - n + 0.5) / (n + 0.5)) for n in counts]
    return Bm25Terms(found, idf)


def _score(value: Any) -> float:
    """A cosine similarity; a zero vector's NaN is 0 (its cosine with anything, as Qdrant)."""
    score = float(value)
    return 0.0 if math.isnan(score) else score


def _threshold(hits: list[Hit], plan: SearchPlan) -> list[Hit]:
    """The hits scoring at least the plan's threshold (they come best first)."""
    if plan.score_threshold is None:
        return hits
    return [h for h in hits if h.score >= plan.score_threshold]


def _fuse(plan: SearchPlan, arms: Sequence[Scored]) -> list[Hit]:
    """The arms' candidates fused by the plan's method, best first (payloads still empty)."""
    scores: dict[str, float] = {}
    if plan.fusion == "rrf":
        for arm in arms:
            for rank, (i, _) in enumerate(arm):
                scores[i] = scores.get(i, 0.0) + 1.0 / (rank + RRF_K)
    elif plan.fusion == "dbsf":
        for arm in arms:
            for i, s in _dbsf_normalised(arm):
                scores[i] = scores.get(i, 0.0) + s
    else:
        # The arms are dense, then BM25 when the query has terms: weighted_terms' order.
        terms, _ = weighted_terms(plan, [arm[0][1] if arm else None for arm in arms])
        for (factor, _), arm in zip(terms, arms, strict=True):
            for i, s in arm:
                scores[i] = scores.get(i, 0.0) + factor * s
    ranked = sorted(scores.items(), key=_best_first)
    return [Hit(i, s, {}) for i, s in ranked]


def _best_first(item: tuple[str, float]) -> tuple[float, str]:
    return -item[1], item[0]


def _dbsf_normalised(arm: Scored) -> Scored:
    """One arm's scores mapped to 0..1 by mean +- 3 sample standard deviations, as qdrant-client
    computes DBSF (a single candidate, or all equal, score 0.5)."""
    if not arm:
        return []
    if len(arm) == 1:
        return [(arm[0][0], 0.5)]
    values = [s for _, s in arm]
    mean = sum(values) / len(values)
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    if variance == 0:
        return [(i, 0.5) for i, _ in arm]
    std = math.sqrt(variance)
    low = mean - 3 * std
    return [(i, (s - low) / (6 * std)) for i, s in arm]


def _with_payloads(cur: Cursor, table: sql.Composable, hits: list[Hit]) -> list[Hit]:
    """The hits with their payloads, read by id (same snapshot as the arms)."""
    if not hits:
        return []
    rows = cur.execute(
        sql.SQL("SELECT id::text, payload FROM {} WHERE id = ANY(%s::uuid[])").format(table),
        ([h.id for h in hits],),
    ).fetchall()
    payloads: dict[str, Any] = dict(rows)
    return [Hit(h.id, h.score, payloads[h.id]) for h in hits if h.id in payloads]
