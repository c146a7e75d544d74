"""Loads a sentence-transformers CrossEncoder and scores (query, document) pairs with it."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag_appliance.embedding.encoder import _dtype_key
from rag_appliance.errors import SettingsError

if TYPE_CHECKING:
    import torch

    from rag_appliance.settings import RerankSettings

log = logging.getLogger(__name__)

# Some tokenizers carry no maximum and report a sentinel (1e30); the position table is the bound.
_NO_LIMIT = 1_000_000


@dataclass(frozen=True)
class LoadedReranker:
    """What the reranker reports about the loaded model."""

    name: str
    source: str
    device: str
    dtype: str
    max_length: int


@dataclass(frozen=True)
class PairScores:
    """Relevance scores (0..1, one per document, input order) and the tokens processed."""

    scores: np.ndarray
    tokens: int


def default_name(model: str) -> str:
    """The served name of a model setting: a local path's folder name, else the hub id."""
    path = Path(model)
    return path.resolve().name if path.exists() else model


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SettingsError(f"rerank.device is '{device}' but no CUDA device is available")
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """The torch dtype to load in: 'auto' is float16 on CUDA and float32 on CPU."""
    import torch

    # No calibration as the embedder does: bfloat16 on CPU is only faster with AMX, and a
    # reranker's output is an ordering, which half precision on CPU would have to be checked on.
    if dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


class CrossEncoderModel:
    """A CrossEncoder behind (query, documents) -> scores; one thread at a time by design."""

    def __init__(self, settings: RerankSettings, device: str | None = None) -> None:
        import torch

        if settings.model is None:
            raise SettingsError("rerank.model is not set: there is no reranker to load")
        self._torch = torch
        self.device = device or resolve_device(settings.device)
        dtype = resolve_dtype(settings.dtype, self.device)
        self._ce = load_cross_encoder(settings.model, self.device, dtype)
        labels = int(self._ce.num_labels)
        if labels != 1:
            raise SettingsError(
                f"rerank.model '{settings.model}' has {labels} output labels; a reranker needs"
                " one relevance logit (a sequence-classification model with num_labels=1)"
            )
        self.tokenizer = self._ce.tokenizer
        native = _native_max_length(self._ce)
        self.max_length = min(settings.max_length or native, native)
        _set_max_length(self._ce, self.max_length)
        self.batch_size = settings.batch_size
        # The one activation for every model: sigmoid of the relevance logit, 0..1 as TEI, vLLM
        # and Infinity report it. A model's config may name another; it is not followed, so that
        # scores (and thresholds on them) mean the same across models.
        self._activation = torch.nn.Sigmoid()
        self.info = LoadedReranker(
            name=default_name(settings.model),
            source=settings.model,
            device=self.device,
            dtype=str(dtype).removeprefix("torch."),
            max_length=self.max_length,
        )
        log.info(
            "reranker %s loaded on %s as %s (max %d tokens per pair)",
            settings.model,
            self.device,
            self.info.dtype,
            self.max_length,
        )

    def score(self, query: str, documents: Sequence[str]) -> PairScores:
        """Scores of (query, document) pairs in input order, and the tokens the model read."""
        pairs = [(query, doc) for doc in documents]
        # Positional: the first parameter is `sentences` in sentence-transformers 5, `inputs` in 6.
        raw = self._ce.predict(
            pairs,
            batch_size=self.batch_size,
            show_progress_bar=False,
            activation_fn=self._activation,
            convert_to_numpy=True,
        )
        scores = np.asarray(raw, dtype=np.float32).reshape(len(pairs))
        return PairScores(scores=scores, tokens=self.count_tokens(query, documents))

    def count_tokens(self, query: str, documents: Sequence[str]) -> int:
        """Tokens of every pair as the model reads them: special tokens in, truncated."""
        if not documents:
            return 0
        # The same cut as predict's preprocessing, so usage is what the model processed.
        encoded = self.tokenizer(
            [query] * len(documents),
            list(documents),
            truncation="longest_first",
            max_length=self.max_length,
        )
        return sum(len(ids) for ids in encoded["input_ids"])

    def warm_up(self) -> None:
        """One pass of the largest batch: batch_size pairs of max_length tokens."""
        filler = "warm " * self.max_length  # at least one token a word: cut to max_length
        self.score("warm", [filler] * self.batch_size)


def load_cross_encoder(source: str, device: str, dtype: torch.dtype) -> Any:
    """A CrossEncoder loaded in `dtype` onto `device`; a one-line SettingsError if not."""
    from sentence_transformers import CrossEncoder

    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        return CrossEncoder(
            source,
            device=device,
            local_files_only=offline,
            model_kwargs={_dtype_key(): dtype},
        )
    except Exception as exc:
        raise SettingsError(
            f"cannot load reranker '{source}': {type(exc).__name__}: {exc}".split("\n")[0]
        ) from exc


def load_measured(settings: RerankSettings) -> tuple[CrossEncoderModel, int]:
    """The model and the GPU bytes it adds to the process at its largest pass (0 on CPU)."""
    device = resolve_device(settings.device)
    if not device.startswith("cuda"):
        return CrossEncoderModel(settings, device), 0
    import torch

    dev = torch.device(device)
    # The embedder's cached activation blocks were counted as its share: release them, so the
    # reranker cannot reuse them and its own peak is measured on top of the embedder's weights.
    torch.cuda.empty_cache()
    torch.cuda.synchronize(dev)
    before = torch.cuda.memory_reserved(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    model = CrossEncoderModel(settings, device)
    model.warm_up()
    torch.cuda.synchronize(dev)
    added = max(int(torch.cuda.max_memory_reserved(dev)) - before, 0)
    log.info("reranker GPU memory: %.2f GiB at its largest pass", added / 1024**3)
    return model, added


def _native_max_length(ce: Any) -> int:
    value = _get_max_length(ce)
    if value is None or value >= _NO_LIMIT:
        positions = getattr(ce.model.config, "max_position_embeddings", None)
        if not positions:
            raise SettingsError("cannot tell the reranker's maximum length: set rerank.max_length")
        return int(positions)
    return int(value)


def _max_length_attr(ce: Any) -> str:
    # sentence-transformers 6 renamed CrossEncoder.max_length (kept, deprecated) to max_seq_length.
    return "max_seq_length" if hasattr(type(ce), "max_seq_length") else "max_length"


def _get_max_length(ce: Any) -> int | None:
    value = getattr(ce, _max_length_attr(ce))
    return None if value is None else int(value)


def _set_max_length(ce: Any, value: int) -> None:
    setattr(ce, _max_length_attr(ce), value)
