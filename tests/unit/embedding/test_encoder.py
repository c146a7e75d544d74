"""Encoder loading on CUDA without a GPU: what is loaded, where, in which dtype (all faked)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from rag_appliance.embedding import encoder as encoder_module
from rag_appliance.embedding.encoder import Encoder, load_model
from rag_appliance.settings import EmbeddingSettings

DIM = 16
CLS, SEP = 101, 102


class FakeTokenizer:
    """One id per character, wrapped in CLS/SEP when asked."""

    model_input_names = ("input_ids", "attention_mask")
    pad_token_id = 0
    model_max_length = 512

    def _ids(self, text: str, special: bool) -> list[int]:
        ids = [3 + ord(c) % 90 for c in text]
        return [CLS, *ids, SEP] if special else ids

    def __call__(self, texts: str | Sequence[str], add_special_tokens: bool) -> dict[str, Any]:
        if isinstance(texts, str):
            return {"input_ids": self._ids(texts, add_special_tokens)}
        return {"input_ids": [self._ids(t, add_special_tokens) for t in texts]}

    def __len__(self) -> int:
        return 200


class FakeST(torch.nn.Module):
    """A SentenceTransformer stand-in that runs on the CPU whatever device it was 'loaded' on."""

    max_seq_length = 64

    def __init__(self, dtype: torch.dtype, broken: bool = False) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.table = torch.nn.Parameter(torch.randn(200, DIM, generator=gen).to(dtype))
        self.tokenizer = FakeTokenizer()
        self.broken = broken  # vectors unrelated to float32's: fails any cosine bar
        self.shapes: list[tuple[int, ...]] = []

    def get_embedding_dimension(self) -> int:
        return DIM

    def __iter__(self) -> Iterator[Any]:
        return iter([SimpleNamespace(pooling_mode="mean")])  # the modules, as ST iterates them

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ids = features["input_ids"]
        self.shapes.append(tuple(ids.shape))
        vectors = self.table[ids].float().mean(dim=1)
        if self.broken:
            vectors = torch.flip(vectors, dims=[1]) * torch.arange(DIM).float()
        return {"sentence_embedding": vectors}

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")


class Loads(list[tuple[str, Any]]):
    """Every (device, dtype) the encoder loaded, and 'empty_cache' when it freed the GPU."""

    broken_fp16 = False


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Loads:
    """Fake loading with 'cuda:0' as the resolved device."""
    seen = Loads()

    def fake_load(source: str, profile: str | None, device: str, dtype: torch.dtype) -> FakeST:
        seen.append((device, dtype))
        return FakeST(dtype, broken=seen.broken_fp16 and dtype == torch.float16)

    monkeypatch.setattr(encoder_module, "load_model", fake_load)
    monkeypatch.setattr(encoder_module, "resolve_device", lambda device: "cuda:0")
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: seen.append(("empty_cache", None)))
    return seen


def settings(**kw: Any) -> EmbeddingSettings:
    return EmbeddingSettings(model="fake/model", **kw)


def test_auto_on_cuda_loads_the_float32_reference_on_the_cpu_then_float16_on_the_gpu(
    loads: Loads,
) -> None:
    enc = Encoder(settings())
    assert loads == [("cpu", torch.float32), ("cuda:0", torch.float16)]
    assert enc.dtype == torch.float16 and enc.info.dtype == "float16"
    assert enc.info.device == "cuda:0"


def test_auto_on_cuda_falls_back_to_float32_when_float16_misses_the_bar(loads: Loads) -> None:
    loads.broken_fp16 = True
    enc = Encoder(settings())
    assert loads == [
        ("cpu", torch.float32),
        ("cuda:0", torch.float16),
        ("empty_cache", None),  # the float16 copy is freed before float32 is loaded
        ("cuda:0", torch.float32),
    ]
    assert enc.dtype == torch.float32


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_a_set_dtype_is_loaded_as_such_once_on_the_gpu(loads: Loads, dtype: str) -> None:
    enc = Encoder(settings(dtype=dtype))
    assert loads == [("cuda:0", getattr(torch, dtype))]
    assert enc.info.dtype == dtype


def test_warm_up_runs_one_pass_of_the_requested_shape(loads: Loads) -> None:
    enc = Encoder(settings(dtype="float16"))
    model: FakeST = enc._st
    model.shapes.clear()
    enc.warm_up(6, 40)
    assert model.shapes == [(6, 40)]


class RecordingST:
    """Records how SentenceTransformer was constructed."""

    calls: list[dict[str, Any]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        RecordingST.calls.append({"args": args, **kwargs})


def test_load_model_passes_device_and_dtype_to_sentence_transformers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sentence_transformers

    RecordingST.calls = []
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", RecordingST)
    monkeypatch.setattr(encoder_module, "_dtype_key", lambda: "dtype")
    load_model("BAAI/bge-large-en-v1.5", None, "cuda:0", torch.float16)
    (call,) = RecordingST.calls
    assert call["args"] == ("BAAI/bge-large-en-v1.5",)
    assert call["device"] == "cuda:0" and call["model_kwargs"] == {"dtype": torch.float16}


BUILT: list[dict[str, Any]] = []


class Word:
    def get_embedding_dimension(self) -> int:
        return DIM


class Transformer6(Word):
    def __init__(self, source: str, model_kwargs: dict[str, Any] | None = None) -> None:
        BUILT.append({"source": source, "model_kwargs": model_kwargs})


class Transformer5(Word):
    def __init__(self, source: str, model_args: dict[str, Any] | None = None) -> None:
        BUILT.append({"source": source, "model_args": model_args})


@pytest.mark.parametrize(
    ("transformer", "keyword"),
    [(Transformer6, "model_kwargs"), (Transformer5, "model_args")],  # sentence-transformers 6, 5
)
def test_load_model_passes_the_dtype_for_a_plain_hugging_face_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, transformer: type[Word], keyword: str
) -> None:
    import sentence_transformers

    models = importlib.import_module("sentence_transformers.models")
    BUILT.clear()
    RecordingST.calls = []
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", RecordingST)
    monkeypatch.setattr(models, "Transformer", transformer)
    monkeypatch.setattr(encoder_module, "_dtype_key", lambda: "torch_dtype")
    load_model(str(tmp_path), None, "cuda:1", torch.bfloat16)
    assert [{"source": str(tmp_path), keyword: {"torch_dtype": torch.bfloat16}}] == BUILT
    assert RecordingST.calls[0]["device"] == "cuda:1"


def test_dtype_key_follows_the_transformers_version(monkeypatch: pytest.MonkeyPatch) -> None:
    for version, key in [("4.45.2", "torch_dtype"), ("4.56.0", "dtype"), ("5.19.0", "dtype")]:
        monkeypatch.setattr(importlib.metadata, "version", lambda _, v=version: v)
        assert encoder_module._dtype_key() == key


def test_cpu_auto_still_loads_the_float32_reference_once(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, torch.dtype]] = []

    def fake_load(source: str, profile: str | None, device: str, dtype: torch.dtype) -> FakeST:
        seen.append((device, dtype))
        return FakeST(dtype)

    monkeypatch.setattr(encoder_module, "load_model", fake_load)
    monkeypatch.setattr(encoder_module, "resolve_device", lambda device: "cpu")
    enc = Encoder(settings())
    assert seen == [("cpu", torch.float32)]  # bfloat16 is a copy of it, compared against it
    assert enc.dtype in (torch.float32, torch.bfloat16)
