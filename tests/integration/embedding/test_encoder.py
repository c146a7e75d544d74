"""Loading real models from local paths, precision choice, and clear load errors."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag_appliance.embedding.encoder import Encoder, resolve_source
from rag_appliance.errors import SettingsError
from rag_appliance.settings import EmbeddingSettings
from tests.integration.conftest import min_cosine

TEXTS = ["Embeddings map text to vectors.", "The weather is sunny today in Lisbon."]


def encode_texts(encoder: Encoder, texts: list[str]) -> np.ndarray:
    return encoder.encode(
        [encoder.finalize(ids, encoder.max_length) for ids in encoder.tokenize(texts)]
    )


def test_auto_dtype_keeps_the_cosine_bar(encoder: Encoder, reference_model: Any) -> None:
    assert encoder.info.dtype in {"float32", "bfloat16"}
    assert encoder.info.device == "cpu" and encoder.info.dimension == 384
    assert min_cosine(encode_texts(encoder, TEXTS), reference_model.encode(TEXTS)) >= 0.999


def test_forced_float32_matches_reference_exactly(reference_model: Any) -> None:
    enc = Encoder(EmbeddingSettings(dtype="float32"))
    assert enc.info.dtype == "float32"
    assert min_cosine(encode_texts(enc, TEXTS), reference_model.encode(TEXTS)) >= 0.99999


def test_renamed_local_copy_with_explicit_profile(tmp_path: Path, reference_model: Any) -> None:
    folder = tmp_path / "my-finetune"
    shutil.copytree(resolve_source("all-MiniLM-L6-v2"), folder)
    enc = Encoder(
        EmbeddingSettings(model=str(folder), profile="sentence-transformers/all-MiniLM-L6-v2")
    )
    assert enc.profile.name == "all-MiniLM-L6-v2" and enc.info.source == str(folder)
    assert min_cosine(encode_texts(enc, TEXTS), reference_model.encode(TEXTS)) >= 0.999


def test_plain_hugging_face_folder_pools_by_profile(tmp_path: Path, reference_model: Any) -> None:
    from transformers import AutoModel, AutoTokenizer

    src = resolve_source("all-MiniLM-L6-v2")
    folder = tmp_path / "all-MiniLM-L6-v2"  # named like the hub model: its profile applies
    AutoModel.from_pretrained(src).save_pretrained(folder)
    AutoTokenizer.from_pretrained(src).save_pretrained(folder)
    assert not (folder / "modules.json").exists()
    enc = Encoder(EmbeddingSettings(model=str(folder), dtype="float32"))
    assert enc.profile.pooling == "mean"
    assert min_cosine(encode_texts(enc, TEXTS), reference_model.encode(TEXTS)) >= 0.9999


def test_profile_dimension_mismatch_is_one_clear_line(tmp_path: Path) -> None:
    folder = tmp_path / "bge-large-en-v1.5"
    shutil.copytree(resolve_source("all-MiniLM-L6-v2"), folder)
    with pytest.raises(SettingsError) as info:
        Encoder(EmbeddingSettings(model=str(folder), dtype="float32"))
    assert "384" in str(info.value) and "1024" in str(info.value)


def test_unreachable_hub_model_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SettingsError) as info:
        Encoder(EmbeddingSettings(model="BAAI/bge-large-en-v1.5"))
    assert "BAAI/bge-large-en-v1.5" in str(info.value) and "\n" not in str(info.value)


def test_a_set_dtype_is_loaded_as_such(
    monkeypatch: pytest.MonkeyPatch, reference_model: Any
) -> None:
    import torch

    from rag_appliance.embedding import encoder as encoder_module

    loaded: list[tuple[str, Any]] = []
    real_load = encoder_module.load_model

    def recording(source: str, profile: str | None, device: str, dtype: Any) -> Any:
        model = real_load(source, profile, device, dtype)
        loaded.append((device, {p.dtype for p in model.parameters()}))
        return model

    monkeypatch.setattr(encoder_module, "load_model", recording)
    enc = Encoder(EmbeddingSettings(dtype="bfloat16", device="cpu"))
    assert loaded == [("cpu", {torch.bfloat16})]  # no float32 load to cast from
    assert enc.info.dtype == "bfloat16"
    assert min_cosine(encode_texts(enc, TEXTS), reference_model.encode(TEXTS)) >= 0.99
