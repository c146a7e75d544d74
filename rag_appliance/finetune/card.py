"""The model card written beside a fine-tuned model: model_card.json and README.md."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rag_appliance.embedding.models import ModelProfile
from rag_appliance.embedding.registry import CARD_FILE

METRICS = ("ndcg@10", "recall@10", "mrr@10")


@dataclass(frozen=True)
class ModelCard:
    """What a fine-tuned model is: its base, data, parameters and held-out metrics."""

    name: str
    base: str
    profile: ModelProfile
    data: dict[str, Any]
    parameters: dict[str, Any]
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    created: int = field(default_factory=lambda: int(time.time()))

    def to_json(self) -> dict[str, Any]:
        """The card as model_card.json holds it."""
        profile = asdict(self.profile)
        for key in ("name", "aliases", "matryoshka_dims"):
            profile.pop(key)
        return {
            "name": self.name,
            "base": self.base,
            "created": self.created,
            "profile": profile,
            "data": self.data,
            "parameters": self.parameters,
            "metrics": self.metrics,
            "training": self.training,
        }


def readme(card: ModelCard) -> str:
    """A human-readable model card in Markdown."""
    lines = [
        f"# {card.name}",
        "",
        f"A fine-tune of `{card.base}` made by `rag-appliance finetune` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(card.created))}.",
        "",
        "## Held-out metrics",
        "",
        "| model | " + " | ".join(METRICS) + " |",
        "| --- | " + " | ".join("---" for _ in METRICS) + " |",
    ]
    for label, row in card.metrics.items():
        lines.append(f"| {label} | " + " | ".join(f"{row.get(m, 0.0):.4f}" for m in METRICS) + " |")
    lines += ["", "## Data", ""]
    lines += [f"- {k}: {v}" for k, v in card.data.items()]
    lines += ["", "## Parameters", ""]
    lines += [f"- {k}: {v}" for k, v in card.parameters.items()]
    if card.training:
        lines += ["", "## Training", ""]
        lines += [f"- {k}: {v}" for k, v in card.training.items()]
    lines += [
        "",
        "## Serving",
        "",
        f"Pooling {card.profile.pooling}, {card.profile.dimension} dimensions, up to "
        f"{card.profile.max_length} tokens, prefixes as the base. Serve it with "
        f"`embedding.model: {card.name}` when it is in `data_dir/models/`, else by its path.",
        "",
    ]
    return "\n".join(lines)


def write_card(folder: Path, card: ModelCard) -> None:
    """Write model_card.json and README.md into the model's folder."""
    text = json.dumps(card.to_json(), indent=2, ensure_ascii=False) + "\n"
    (folder / CARD_FILE).write_text(text, encoding="utf-8")
    (folder / "README.md").write_text(readme(card), encoding="utf-8")
