"""The model registry: fine-tuned embedding models under data_dir/models/<name>/, by name."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_appliance.embedding.models import ModelProfile

if TYPE_CHECKING:
    from rag_appliance.settings import EmbeddingSettings

CARD_FILE = "model_card.json"
POOLINGS = ("mean", "cls")
# A registry name is one folder name: no path separators, nothing hidden.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class RegisteredModel:
    """A fine-tuned model found in the registry, with what its card says."""

    name: str
    path: Path
    base: str
    created: int
    metrics: dict[str, Any] = field(default_factory=dict)


def models_dir(data_dir: Path) -> Path:
    """Where the registry keeps its models."""
    return data_dir / "models"


def read_card(folder: Path) -> dict[str, Any] | None:
    """The model card of a fine-tuned model folder, or None when it has none (or a bad one)."""
    try:
        card = json.loads((folder / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) else None


def _entry(folder: Path, card: dict[str, Any]) -> RegisteredModel:
    return RegisteredModel(
        name=folder.name,
        path=folder,
        base=str(card.get("base", "")),
        created=int(card.get("created", 0)),
        metrics=dict(card.get("metrics") or {}),
    )


def list_models(data_dir: Path) -> list[RegisteredModel]:
    """Every model in the registry (folders with a card), by name."""
    root = models_dir(data_dir)
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(root.iterdir()):
        card = read_card(folder) if folder.is_dir() and NAME.match(folder.name) else None
        if card is not None:
            found.append(_entry(folder, card))
    return found


def lookup(data_dir: Path, name: str) -> RegisteredModel | None:
    """The registry model called `name`, or None."""
    if not NAME.match(name):
        return None
    folder = models_dir(data_dir) / name
    card = read_card(folder)
    return _entry(folder, card) if card is not None else None


def resolve(settings: EmbeddingSettings, data_dir: Path) -> EmbeddingSettings:
    """The settings with a registry name in `model` replaced by its folder (else unchanged)."""
    # An existing path wins: `model: ./my-model` means that folder, not a registry entry.
    if Path(settings.model).exists():
        return settings
    found = lookup(data_dir, settings.model)
    if found is None:
        return settings
    return settings.model_copy(update={"model": str(found.path)})


def card_profile(source: str) -> ModelProfile | None:
    """The profile a fine-tuned model inherits from its base, renamed after the model."""
    card = read_card(Path(source))
    fields = card.get("profile") if card is not None else None
    if card is None or not isinstance(fields, dict) or fields.get("pooling") not in POOLINGS:
        return None
    try:
        return ModelProfile(
            name=str(card.get("name") or Path(source).name),
            dimension=int(fields["dimension"]),
            max_length=int(fields["max_length"]),
            pooling=fields["pooling"],
            normalize=bool(fields.get("normalize", True)),
            query_prefix=str(fields.get("query_prefix", "")),
            document_prefix=str(fields.get("document_prefix", "")),
            # Contrastive fine-tuning does not keep a base's Matryoshka property: full size only.
        )
    except (KeyError, TypeError, ValueError):
        return None


def model_entries(
    models: list[RegisteredModel], served: set[str], created: int
) -> dict[str, dict[str, Any]]:
    """OpenAI model objects for registry models, with their base and metrics as an extension."""
    return {
        m.name: {
            "id": m.name,
            "object": "model",
            "created": m.created or created,
            "owned_by": "rag-appliance",
            # Not served: selectable with `embedding.model: <name>` (and a restart).
            "registry": {"base": m.base, "metrics": m.metrics, "served": m.name in served},
        }
        for m in models
    }
