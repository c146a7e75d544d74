"""The model card: what it records, and the profile the registry serves the model with."""

from __future__ import annotations

import json
from pathlib import Path

from rag_appliance.embedding.models import find_profile
from rag_appliance.embedding.registry import CARD_FILE, card_profile
from rag_appliance.finetune.card import ModelCard, write_card

METRICS = {
    "base": {"ndcg@10": 0.5, "recall@10": 0.7, "mrr@10": 0.45},
    "finetuned": {"ndcg@10": 0.6, "recall@10": 0.8, "mrr@10": 0.55},
}


def card(name: str = "docs-e5") -> ModelCard:
    profile = find_profile("intfloat/e5-large-v2")
    assert profile is not None
    return ModelCard(
        name=name,
        base=profile.name,
        profile=profile,
        data={"pairs": "train.jsonl", "sha256": "sha256:abc", "train_pairs": 80},
        parameters={"epochs": 1, "batch_size": 16, "learning_rate": 5e-5},
        metrics=METRICS,
        training={"seconds": 12.5, "steps": 5},
        created=1_790_000_000,
    )


def test_card_json_records_base_data_parameters_and_metrics(tmp_path: Path) -> None:
    write_card(tmp_path, card())
    saved = json.loads((tmp_path / CARD_FILE).read_text(encoding="utf-8"))
    assert saved["name"] == "docs-e5" and saved["base"] == "intfloat/e5-large-v2"
    assert saved["data"]["sha256"] == "sha256:abc"
    assert saved["parameters"]["learning_rate"] == 5e-5
    assert saved["metrics"] == METRICS
    assert saved["created"] == 1_790_000_000
    assert saved["profile"]["query_prefix"] == "query: "
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "| finetuned | 0.6000 | 0.8000 | 0.5500 |" in readme
    assert "intfloat/e5-large-v2" in readme and "embedding.model: docs-e5" in readme


def test_card_profile_keeps_the_base_profile_under_the_new_name(tmp_path: Path) -> None:
    write_card(tmp_path, card())
    profile = card_profile(str(tmp_path))
    assert profile is not None
    assert profile.name == "docs-e5"  # collections record this name: a new model, not e5
    assert (profile.pooling, profile.dimension, profile.max_length) == ("mean", 1024, 512)
    assert (profile.query_prefix, profile.document_prefix) == ("query: ", "passage: ")
    assert profile.matryoshka_dims == () and profile.aliases == ()


def test_no_card_or_a_broken_one_gives_no_profile(tmp_path: Path) -> None:
    assert card_profile(str(tmp_path)) is None
    (tmp_path / CARD_FILE).write_text("{broken", encoding="utf-8")
    assert card_profile(str(tmp_path)) is None
    (tmp_path / CARD_FILE).write_text(json.dumps({"profile": {"pooling": "max"}}), "utf-8")
    assert card_profile(str(tmp_path)) is None
