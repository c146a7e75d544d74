"""BEIR-format datasets and the retrieval metrics nDCG@k, Recall@k, MRR@k."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rag_appliance.errors import InvalidRequest


@dataclass(frozen=True)
class BeirDataset:
    """corpus (id -> title + text), queries (id -> text), qrels (query id -> doc id -> grade)."""

    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    titles: dict[str, str] = field(default_factory=dict)  # id -> title (may be empty)
    bodies: dict[str, str] = field(default_factory=dict)  # id -> text without the title


def load_beir(folder: Path, split: str = "test") -> BeirDataset:
    """Read a BEIR folder; a missing or malformed file is one InvalidRequest naming it."""
    try:
        return _load_beir(folder, split)
    except FileNotFoundError as exc:
        raise InvalidRequest(
            f"{exc.filename}: no such file (a BEIR folder?)", param="dataset"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:  # bad JSON, a missing column or field
        raise InvalidRequest(
            f"{folder}: not a BEIR folder ({type(exc).__name__}: {exc})", param="dataset"
        ) from None


def _load_beir(folder: Path, split: str) -> BeirDataset:
    """Read corpus.jsonl, queries.jsonl and qrels/<split>.tsv; documents are title + ' ' + text."""
    corpus: dict[str, str] = {}
    titles: dict[str, str] = {}
    bodies: dict[str, str] = {}
    for line in (folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            doc_id = str(row["_id"])
            titles[doc_id] = str(row.get("title") or "").strip()
            bodies[doc_id] = str(row.get("text") or "").strip()
            corpus[doc_id] = f"{titles[doc_id]} {bodies[doc_id]}".strip()
    queries: dict[str, str] = {}
    for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            queries[str(row["_id"])] = row["text"]
    qrels: dict[str, dict[str, int]] = {}
    with (folder / "qrels" / f"{split}.tsv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            grade = int(row["score"])
            if grade > 0:
                qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = grade
    return BeirDataset(corpus, queries, qrels, titles, bodies)


def metrics_at_k(
    ranked: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]], k: int = 10
) -> dict[str, float]:
    """Mean nDCG@k (graded), Recall@k and MRR@k over the queries that have judgements."""
    ndcg = recall = mrr = 0.0
    judged = [q for q in qrels if qrels[q]]
    for qid in judged:
        rels = qrels[qid]
        top = list(dict.fromkeys(ranked.get(qid, [])))[:k]
        dcg = sum((2 ** rels.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(top))
        ideal = sorted(rels.values(), reverse=True)[:k]
        idcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
        ndcg += dcg / idcg if idcg else 0.0
        recall += len({d for d in top if d in rels}) / len(rels)
        mrr += next((1.0 / (i + 1) for i, d in enumerate(top) if d in rels), 0.0)
    n = len(judged) or 1
    return {f"ndcg@{k}": ndcg / n, f"recall@{k}": recall / n, f"mrr@{k}": mrr / n}
