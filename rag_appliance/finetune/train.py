"""Contrastive training of a sentence-transformers model (MultipleNegativesRankingLoss)."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_appliance.embedding.models import ModelProfile
from rag_appliance.errors import SettingsError
from rag_appliance.finetune.pairs import Pair

log = logging.getLogger(__name__)

# Above this batch size on a GPU the cached loss keeps memory flat (GradCache mini-batches).
CACHED_LOSS_FROM = 64
_CACHED_MINI_BATCH = 32


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters; the defaults suit a few hundred to a few thousand pairs."""

    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 42
    max_length: int | None = None  # tokens per training text; None: the served maximum


@dataclass(frozen=True)
class TrainResult:
    """What the trainer reports: the loss, the number of steps, the time and the set-up."""

    seconds: float
    steps: int
    loss: float
    loss_name: str
    precision: str
    device: str


def require_extra() -> None:
    """A one-line error naming the extra when the training libraries are missing."""
    for module in ("datasets", "accelerate"):
        # Found, not imported: the import itself waits until training starts.
        if importlib.util.find_spec(module) is None:
            raise SettingsError(
                f"fine-tuning needs the '{module}' package: pip install 'rag-appliance[finetune]'"
            )


def columns(pairs: Sequence[Pair], seed: int) -> dict[str, list[str]]:
    """anchor / positive (/ negative) columns; a pair without a negative gets another's positive."""
    out: dict[str, list[str]] = {
        "anchor": [p.query for p in pairs],
        "positive": [p.positive for p in pairs],
    }
    if any(p.negative for p in pairs):
        # Every row needs the same columns: a random other positive stands in (a plain negative).
        rng = random.Random(seed)
        negatives = []
        for i, p in enumerate(pairs):
            if p.negative:
                negatives.append(p.negative)
                continue
            others = [
                q.positive for j, q in enumerate(pairs) if j != i and q.positive != p.positive
            ]
            negatives.append(rng.choice(others) if others else p.positive)
        out["negative"] = negatives
    return out


def _precision(device: str) -> tuple[bool, bool]:
    """(bf16, fp16): AMP on CUDA, bfloat16 where the GPU has it; float32 on the CPU."""
    if not device.startswith("cuda"):
        return False, False
    import torch

    bf16 = bool(torch.cuda.is_bf16_supported())
    return bf16, not bf16


def train(
    model: Any,
    profile: ModelProfile,
    pairs: Sequence[Pair],
    config: TrainConfig,
    work_dir: Path,
) -> TrainResult:
    """Train `model` (a SentenceTransformer) in place on the pairs; scratch files go to work_dir."""
    require_extra()
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )

    losses = _losses_module()
    device = str(model.device)
    bf16, fp16 = _precision(device)
    cached = device.startswith("cuda") and config.batch_size > CACHED_LOSS_FROM
    loss = (
        losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=_CACHED_MINI_BATCH)
        if cached
        else losses.MultipleNegativesRankingLoss(model)
    )
    data = Dataset.from_dict(columns(pairs, config.seed))
    # The served model's prefixes ("query: " / "passage: ") are part of what it was trained on.
    prompts = {
        k: v
        for k, v in (
            ("anchor", profile.query_prefix),
            ("positive", profile.document_prefix),
            ("negative", profile.document_prefix),
        )
        if v and k in data.column_names
    }
    args = SentenceTransformerTrainingArguments(
        output_dir=str(work_dir),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        # Steps, not a ratio: transformers 5 deprecates warmup_ratio, 4.x has no float steps.
        warmup_steps=int(config.warmup_ratio * _steps(len(pairs), config)),
        weight_decay=config.weight_decay,
        seed=config.seed,
        data_seed=config.seed,
        bf16=bf16,
        fp16=fp16,
        # In-batch negatives: two rows with the same text in one batch would be false negatives.
        batch_sampler="no_duplicates",
        prompts=prompts or None,
        save_strategy="no",
        logging_steps=10,
        report_to=[],
        disable_tqdm=False,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss)
    started = time.perf_counter()
    output = trainer.train()
    return TrainResult(
        seconds=time.perf_counter() - started,
        steps=int(output.global_step),
        loss=float(output.training_loss),
        loss_name=type(loss).__name__,
        precision="bf16" if bf16 else "fp16" if fp16 else "fp32",
        device=device,
    )


def _steps(rows: int, config: TrainConfig) -> int:
    return -(-rows // config.batch_size) * config.epochs


def _losses_module() -> Any:
    """sentence-transformers 6 moved the losses; 5.x only has the old path."""
    try:
        return importlib.import_module("sentence_transformers.sentence_transformer.losses")
    except ImportError:
        return importlib.import_module("sentence_transformers.losses")
