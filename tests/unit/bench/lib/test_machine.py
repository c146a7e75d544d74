"""bench/lib/machine.py: what a run reports about its machine, devices, and offline defaults."""

from __future__ import annotations

import os
import platform
from typing import Any

import pytest
import torch


@pytest.fixture
def machine(bench_module: Any) -> Any:
    return bench_module("lib.machine")


def test_cpu_info_names_the_cpu_and_the_versions(machine: Any) -> None:
    info = machine.cpu_info()
    assert info["cpu"] == machine.cpu_name() and info["cpu"]
    assert info["cores"] == os.cpu_count()
    assert 1 <= info["usable_cores"] <= info["cores"]
    assert info["torch"] == torch.__version__
    assert info["cuda"] is torch.cuda.is_available()
    assert info["python"] == platform.python_version()
    assert {"torch_threads", "sentence_transformers", "numpy", "platform"} <= set(info)


def test_gpu_info_on_the_cpu(machine: Any) -> None:
    info = machine.gpu_info("cpu")
    assert (info["device"], info["device_name"]) == ("cpu", "cpu")
    assert info["torch"] == torch.__version__
    assert {"cuda", "cudnn", "transformers", "sentence_transformers", "cpu_cores"} <= set(info)
    assert "driver" not in info


def test_resolve_device(machine: Any) -> None:
    assert machine.resolve_device("cpu", "bench/x.py") == "cpu"
    if torch.cuda.is_available():
        assert machine.resolve_device(None, "bench/x.py") == "cuda"
    else:
        assert machine.resolve_device(None, "bench/x.py") == "cpu"
        with pytest.raises(SystemExit, match=r"bench/x.py: --device cuda:1 but torch sees no"):
            machine.resolve_device("cuda:1", "bench/x.py")


def test_offline_keeps_what_the_caller_set(machine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    machine.offline()
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "0"
