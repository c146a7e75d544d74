"""build_services on a faked CUDA device: warm-up, then the memory reading, then vLLM's share."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from rag_appliance import services as services_module
from rag_appliance.embedding import encoder as encoder_module
from rag_appliance.embedding.encoder import LoadedModel
from rag_appliance.generation import vllm_engine
from rag_appliance.generation.memory import GIB
from rag_appliance.observability import Metrics
from tests.conftest import make_services, make_settings
from tests.fakes import FAKE_PROFILE, FakeEncoder


class CudaFakeEncoder(FakeEncoder):
    """FakeEncoder claiming a GPU; records its warm-up in a shared event list."""

    def __init__(self, events: list[Any], device: str = "cuda:0") -> None:
        super().__init__()
        self.events = events
        self.device = device
        self.tokenizer = None
        self.info = LoadedModel("fake-model", "fake", device, "float16", 8, FAKE_PROFILE.max_length)

    def warm_up(self, count: int, length: int) -> None:
        self.events.append(("warm_up", count, length))


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Calls to the CUDA memory API, in order; the peak reads 3 GiB."""
    seen: list[Any] = []
    cuda = torch.cuda
    monkeypatch.setattr(cuda, "empty_cache", lambda: seen.append("empty_cache"))
    monkeypatch.setattr(cuda, "reset_peak_memory_stats", lambda d: seen.append(("reset", str(d))))
    monkeypatch.setattr(cuda, "synchronize", lambda d: seen.append(("synchronize", str(d))))

    def peak(device: torch.device) -> int:
        seen.append(("max_memory_reserved", str(device)))
        return 3 * GIB

    monkeypatch.setattr(cuda, "max_memory_reserved", peak)
    return seen


def test_gpu_share_is_read_after_one_warm_up_of_the_largest_batch(events: list[Any]) -> None:
    enc = CudaFakeEncoder(events)
    assert services_module._embedder_gpu_bytes(enc, 64, 256) == 3 * GIB  # type: ignore[arg-type]
    assert events == [
        "empty_cache",  # calibration's cached blocks are not the embedder's to keep
        ("reset", "cuda:0"),
        ("warm_up", 64, 256),
        ("synchronize", "cuda:0"),
        ("max_memory_reserved", "cuda:0"),
    ]


def test_no_gpu_share_and_no_warm_up_on_cpu(events: list[Any]) -> None:
    enc = CudaFakeEncoder(events, device="cpu")
    assert services_module._embedder_gpu_bytes(enc, 64, 256) == 0  # type: ignore[arg-type]
    assert events == []


def test_build_services_hands_vllm_the_share_measured_after_warm_up(
    events: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(embedding={"batch_max_tokens": 320, "batch_max_size": 256})
    monkeypatch.setattr(encoder_module, "Encoder", lambda _: CudaFakeEncoder(events))
    monkeypatch.setattr(services_module, "build_store", lambda _: None)

    class RecordingGenerator:
        def __init__(self, *args: Any, embedder_gpu_bytes: int) -> None:
            events.append(("vllm", embedder_gpu_bytes))

    monkeypatch.setattr(vllm_engine, "VllmGenerator", RecordingGenerator)
    built = services_module.build_services(settings)
    # The fake model's inputs are at most 32 tokens: 320 // 32 = 10 of them fill the budget.
    assert ("warm_up", 10, 32) in events
    order = [e if isinstance(e, str) else e[0] for e in events]
    assert order.index("warm_up") < order.index("max_memory_reserved") < order.index("vllm")
    assert events[-1] == ("vllm", 3 * GIB)
    assert built.embedding.largest_batch() == (10, 32)


def test_services_own_a_metrics_registry_fed_by_the_batcher() -> None:
    settings = make_settings()
    first = make_services(settings, FakeEncoder())
    second = make_services(settings, FakeEncoder())
    assert isinstance(first.metrics, Metrics)
    assert first.metrics.registry is not second.metrics.registry
    assert first.embedding.batcher.observer is first.metrics
