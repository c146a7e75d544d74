"""The model registry: names resolve to folders under data_dir/models, with their cards."""

from __future__ import annotations

import json
from pathlib import Path

from rag_appliance.embedding.registry import (
    CARD_FILE,
    list_models,
    lookup,
    model_entries,
    resolve,
)
from rag_appliance.settings import EmbeddingSettings


def register(data_dir: Path, name: str, ndcg: float = 0.6) -> Path:
    folder = data_dir / "models" / name
    folder.mkdir(parents=True)
    card = {
        "name": name,
        "base": "all-MiniLM-L6-v2",
        "created": 1_790_000_000,
        "metrics": {"finetuned": {"ndcg@10": ndcg}},
    }
    (folder / CARD_FILE).write_text(json.dumps(card), encoding="utf-8")
    return folder


def test_lists_only_folders_with_a_card(tmp_path: Path) -> None:
    register(tmp_path, "b-model")
    register(tmp_path, "a-model", 0.7)
    (tmp_path / "models" / "no-card").mkdir()
    (tmp_path / "models" / ".a-model.partial-x").mkdir()  # a finetune still running
    found = list_models(tmp_path)
    assert [m.name for m in found] == ["a-model", "b-model"]
    assert found[0].base == "all-MiniLM-L6-v2"
    assert found[0].metrics["finetuned"]["ndcg@10"] == 0.7
    assert list_models(tmp_path / "elsewhere") == []


def test_resolve_a_registry_name_to_its_folder(tmp_path: Path) -> None:
    folder = register(tmp_path, "docs-minilm")
    resolved = resolve(EmbeddingSettings(model="docs-minilm", batch_max_size=7), tmp_path)
    assert resolved.model == str(folder)
    assert resolved.batch_max_size == 7  # everything else kept


def test_hub_names_paths_and_unsafe_names_are_left_alone(tmp_path: Path) -> None:
    register(tmp_path, "docs-minilm")
    for name in ("all-MiniLM-L6-v2", "BAAI/bge-m3", "../models/docs-minilm", "unknown"):
        assert resolve(EmbeddingSettings(model=name), tmp_path).model == name
    assert lookup(tmp_path, "../docs-minilm") is None
    local = tmp_path / "docs-minilm"  # an existing path wins over the registry name
    local.mkdir()
    settings = EmbeddingSettings(model=str(local))
    assert resolve(settings, tmp_path).model == str(local)


def test_model_entries_are_openai_objects_with_the_registry_extension(tmp_path: Path) -> None:
    register(tmp_path, "docs-minilm")
    register(tmp_path, "old-minilm")
    entries = model_entries(list_models(tmp_path), {"docs-minilm"}, created=5)
    assert entries["docs-minilm"]["object"] == "model"
    assert entries["docs-minilm"]["created"] == 1_790_000_000
    assert entries["docs-minilm"]["registry"]["served"] is True
    assert entries["old-minilm"]["registry"] == {
        "base": "all-MiniLM-L6-v2",
        "metrics": {"finetuned": {"ndcg@10": 0.6}},
        "served": False,
    }
