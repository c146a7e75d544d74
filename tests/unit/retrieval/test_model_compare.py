"""Multi-model eval: each model's settings, the table and the JSON, one entry per model."""

from __future__ import annotations

from pathlib import Path

from rag_appliance.retrieval.evaluation import BeirDataset
from rag_appliance.retrieval.model_compare import ModelRow, model_settings, result_json, table
from tests.conftest import make_settings

M = {"ndcg@10": 0.5, "recall@10": 0.75, "mrr@10": 0.25}
DATA = BeirDataset({"d1": "a", "d2": "b"}, {"q1": "x", "q2": "y"}, {"q1": {"d1": 1}})


def test_another_model_drops_the_configured_models_names_and_profile() -> None:
    settings = make_settings(
        embedding={"served_name": "prod", "aliases": ["p"], "profile": "all-MiniLM-L6-v2"}
    )
    other = model_settings(settings, "docs-minilm").embedding
    assert other.model == "docs-minilm"
    assert (other.served_name, other.aliases, other.profile) == (None, [], None)
    assert other.batch_max_tokens == settings.embedding.batch_max_tokens
    same = model_settings(settings, settings.embedding.model).embedding
    assert same.served_name == "prod" and same.profile == "all-MiniLM-L6-v2"


def test_table_and_json_have_one_row_per_model() -> None:
    rows = [
        ModelRow("all-MiniLM-L6-v2", "all-MiniLM-L6-v2", M, 1.0, 0.5),
        ModelRow("docs-minilm", "docs-minilm", M | {"ndcg@10": 0.625}, 2.0, 0.5),
    ]
    lines = table(rows, 10).splitlines()
    assert lines[0].split() == ["model", "ndcg@10", "recall@10", "mrr@10", "index", "s"]
    assert lines[2].split()[:4] == ["docs-minilm", "62.50", "75.00", "25.00"]
    result = result_json(make_settings(), Path("set"), DATA, 10, "dense", rows)
    assert result["queries"] == 1 and result["documents"] == 2 and result["mode"] == "dense"
    assert result["models"]["docs-minilm"]["ndcg@10"] == 0.625
    assert set(result["models"]["all-MiniLM-L6-v2"]) >= {"ndcg@10", "recall@10", "mrr@10"}


def test_json_keys_by_given_name_when_served_names_collide() -> None:
    rows = [ModelRow("all-MiniLM-L6-v2", "m", M, 1, 1), ModelRow("/models/copy", "m", M, 1, 1)]
    result = result_json(make_settings(), Path("set"), DATA, 10, "hybrid", rows)
    assert list(result["models"]) == ["all-MiniLM-L6-v2", "/models/copy"]
