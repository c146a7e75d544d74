"""Reranker loading without weights: names, device, dtype, load errors, the GPU measurement and
its hand-over to vLLM's share (CUDA faked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from rag_appliance import services as services_module
from rag_appliance.embedding import encoder as encoder_module
from rag_appliance.embedding.encoder import LoadedModel
from rag_appliance.errors import SettingsError
from rag_appliance.generation import vllm_engine
from rag_appliance.generation.memory import GIB
from rag_appliance.rerank import model as model_module
from rag_appliance.rerank.model import (
    CrossEncoderModel,
    LoadedReranker,
    default_name,
    load_cross_encoder,
    resolve_device,
    resolve_dtype,
)
from rag_appliance.settings import RerankSettings
from tests.conftest import make_settings
from tests.fakes import FAKE_PROFILE, FakeEncoder


def test_auto_dtype_is_float16_on_cuda_and_float32_on_cpu() -> None:
    assert resolve_dtype("auto", "cuda") is torch.float16
    assert resolve_dtype("auto", "cuda:1") is torch.float16
    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("bfloat16", "cpu") is torch.bfloat16


def test_default_name_is_the_hub_id_or_the_folder_name(tmp_path: Path) -> None:
    assert default_name("BAAI/bge-reranker-v2-m3") == "BAAI/bge-reranker-v2-m3"
    folder = tmp_path / "my-reranker"
    folder.mkdir()
    assert default_name(str(folder)) == "my-reranker"
    assert default_name(str(folder) + "/") == "my-reranker"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_one_line_naming_the_setting() -> None:
    with pytest.raises(SettingsError) as info:
        resolve_device("cuda")
    assert str(info.value) == "rerank.device is 'cuda' but no CUDA device is available"
    assert resolve_device("cpu") == "cpu"


def test_no_model_set_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match=r"rerank\.model is not set"):
        CrossEncoderModel(RerankSettings())


def test_an_unloadable_hub_name_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # An empty hub cache, offline: the real loading path fails without reaching the network.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(SettingsError) as info:
        load_cross_encoder("no-such-org/no-such-reranker", "cpu", torch.float32)
    message = str(info.value)
    assert message.startswith("cannot load reranker 'no-such-org/no-such-reranker': ")
    assert "\n" not in message


def test_a_folder_without_a_model_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_cross_encoder(str(tmp_path), "cpu", torch.float32)
    assert str(info.value).startswith(f"cannot load reranker '{tmp_path}': ")
    assert "\n" not in str(info.value)


class _Config:
    def __init__(self, positions: int | None) -> None:
        self.max_position_embeddings = positions


class _FakeCrossEncoder:
    """Just the attributes the length logic reads (sentence-transformers 6 naming)."""

    max_seq_length: Any = None

    def __init__(self, length: int | None, positions: int | None) -> None:
        self.max_seq_length = length
        self.model = type("M", (), {"config": _Config(positions)})()


def test_native_max_length_falls_back_to_positions_for_unbounded_tokenizers() -> None:
    assert model_module._native_max_length(_FakeCrossEncoder(512, 514)) == 512
    assert model_module._native_max_length(_FakeCrossEncoder(int(1e30), 514)) == 514
    assert model_module._native_max_length(_FakeCrossEncoder(None, 128)) == 128
    with pytest.raises(SettingsError, match=r"set rerank\.max_length"):
        model_module._native_max_length(_FakeCrossEncoder(None, None))
    ce = _FakeCrossEncoder(512, 514)
    model_module._set_max_length(ce, 64)
    assert ce.max_seq_length == 64


class FakeRerankModel:
    """Stands in for CrossEncoderModel in the measurement; records the load and warm-up."""

    def __init__(self, events: list[Any], settings: RerankSettings, device: str) -> None:
        events.append(("load", device))
        self.events = events
        self.max_length = 16
        self.info = LoadedReranker("fake-reranker", "fake", device, "float16", 16)

    def warm_up(self) -> None:
        self.events.append("warm_up")

    def score(self, query: str, documents: Any) -> Any:
        raise AssertionError("not scored in these tests")


@pytest.fixture
def cuda_events(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Calls to the CUDA memory API, in order: 2 GiB reserved before, 3.5 GiB at the peak."""
    seen: list[Any] = []
    cuda = torch.cuda
    monkeypatch.setattr(model_module, "resolve_device", lambda d: "cuda:0")
    monkeypatch.setattr(
        model_module,
        "CrossEncoderModel",
        lambda settings, device: FakeRerankModel(seen, settings, device),
    )
    monkeypatch.setattr(cuda, "empty_cache", lambda: seen.append("empty_cache"))
    monkeypatch.setattr(cuda, "synchronize", lambda d: seen.append("synchronize"))
    monkeypatch.setattr(cuda, "reset_peak_memory_stats", lambda d: seen.append("reset"))

    def reserved(device: torch.device) -> int:
        seen.append("memory_reserved")
        return 2 * GIB

    def peak(device: torch.device) -> int:
        seen.append("max_memory_reserved")
        return int(3.5 * GIB)

    monkeypatch.setattr(cuda, "memory_reserved", reserved)
    monkeypatch.setattr(cuda, "max_memory_reserved", peak)
    return seen


def test_the_gpu_bytes_are_the_peak_of_load_and_largest_pass_over_what_was_there(
    cuda_events: list[Any],
) -> None:
    model, added = model_module.load_measured(RerankSettings(model="fake", device="cuda"))
    assert added == int(1.5 * GIB)
    assert isinstance(model, FakeRerankModel)
    assert cuda_events == [
        "empty_cache",  # the embedder's cached activations are not the reranker's to reuse
        "synchronize",
        "memory_reserved",
        "reset",
        ("load", "cuda:0"),
        "warm_up",
        "synchronize",
        "max_memory_reserved",
    ]


def test_on_cpu_nothing_is_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(
        model_module,
        "CrossEncoderModel",
        lambda settings, device: FakeRerankModel(seen, settings, device),
    )
    _, added = model_module.load_measured(RerankSettings(model="fake", device="cpu"))
    assert added == 0
    assert seen == [("load", "cpu")]  # no warm-up pass just to measure


class CpuFakeEncoder(FakeEncoder):
    """FakeEncoder with what build_services reads from a loaded encoder, on the CPU."""

    def __init__(self) -> None:
        super().__init__()
        self.device = "cpu"
        self.tokenizer = None
        self.info = LoadedModel("fake-model", "fake", "cpu", "float32", 8, FAKE_PROFILE.max_length)


@pytest.mark.parametrize("configured", [True, False])
def test_build_services_builds_the_reranker_and_counts_its_gpu_bytes_for_vllm(
    monkeypatch: pytest.MonkeyPatch, configured: bool
) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(encoder_module, "Encoder", lambda _: CpuFakeEncoder())
    monkeypatch.setattr(services_module, "build_store", lambda _: None)

    def measured(settings: RerankSettings) -> tuple[FakeRerankModel, int]:
        return FakeRerankModel(seen, settings, "cuda:0"), 2 * GIB

    monkeypatch.setattr(model_module, "load_measured", measured)

    class RecordingGenerator:
        def __init__(self, *args: Any, embedder_gpu_bytes: int) -> None:
            seen.append(("vllm", embedder_gpu_bytes))

    monkeypatch.setattr(vllm_engine, "VllmGenerator", RecordingGenerator)
    rerank = {"model": "some/reranker", "aliases": ["rr"]} if configured else {}
    built = services_module.build_services(make_settings(rerank=rerank))
    if configured:
        assert built.reranker is not None
        assert built.reranker.model_names == ["fake-reranker", "rr"]
        assert seen == [("load", "cuda:0"), ("vllm", 2 * GIB)]  # embedder 0 (CPU) + reranker
    else:
        assert built.reranker is None
        assert seen == [("vllm", 0)]
