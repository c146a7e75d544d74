"""BEIR loading and the retrieval metrics against hand-computed values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rag_appliance.retrieval.evaluation import load_beir, metrics_at_k

DATASET = Path(__file__).resolve().parents[2] / "data" / "beir-mini"


def test_perfect_and_empty_rankings() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 2, "c": 1}}
    perfect = metrics_at_k({"q1": ["a"], "q2": ["b", "c"]}, qrels, k=10)
    assert perfect == {"ndcg@10": 1.0, "recall@10": 1.0, "mrr@10": 1.0}
    assert metrics_at_k({}, qrels, k=10) == {"ndcg@10": 0.0, "recall@10": 0.0, "mrr@10": 0.0}


def test_graded_ndcg_recall_and_mrr_by_hand() -> None:
    qrels = {"q": {"b": 2, "c": 1}}
    # "c" first (gain 1), then an irrelevant doc, then "b" (gain 3) at rank 3.
    got = metrics_at_k({"q": ["c", "x", "b"]}, qrels, k=3)
    dcg = 1 / math.log2(2) + 3 / math.log2(4)
    idcg = 3 / math.log2(2) + 1 / math.log2(3)
    assert got["ndcg@3"] == pytest.approx(dcg / idcg)
    assert got["recall@3"] == 1.0 and got["mrr@3"] == 1.0
    # Cut at k=1: only "c" counts.
    one = metrics_at_k({"q": ["x", "c", "b"]}, qrels, k=1)
    assert one == {"ndcg@1": 0.0, "recall@1": 0.0, "mrr@1": 0.0}
    two = metrics_at_k({"q": ["x", "c", "b"]}, qrels, k=2)
    assert two["mrr@2"] == 0.5 and two["recall@2"] == 0.5


def test_repeated_documents_count_once_and_unjudged_queries_are_skipped() -> None:
    qrels = {"q": {"a": 1, "b": 1}, "unjudged": {}}
    # Several chunks of "a" rank: the duplicates must not push "b" out or count twice.
    got = metrics_at_k({"q": ["a", "a", "a", "b"], "unjudged": ["z"]}, qrels, k=2)
    assert got["recall@2"] == 1.0 and got["ndcg@2"] == pytest.approx(1.0)


def test_load_beir_reads_titles_queries_and_positive_grades(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    rows = [{"_id": "d1", "title": "Title", "text": "body"}, {"_id": 2, "text": "no title"}]
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "what?"}) + "\n")
    (tmp_path / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\t2\t0\n"
    )
    data = load_beir(tmp_path)
    assert data.corpus == {"d1": "Title body", "2": "no title"}
    assert data.queries == {"q1": "what?"}
    assert data.qrels == {"q1": {"d1": 2}}


def test_the_bundled_mini_dataset_loads() -> None:
    data = load_beir(DATASET)
    assert data.corpus and data.queries and data.qrels
    assert all(doc in data.corpus for rels in data.qrels.values() for doc in rels)


def test_load_beir_errors_name_the_folder_or_file(tmp_path: Path) -> None:
    from rag_appliance.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match=r"corpus\.jsonl: no such file") as info:
        load_beir(tmp_path / "missing")
    assert info.value.param == "dataset"
    (tmp_path / "corpus.jsonl").write_text("{broken\n", encoding="utf-8")
    with pytest.raises(InvalidRequest, match="not a BEIR folder"):
        load_beir(tmp_path)
