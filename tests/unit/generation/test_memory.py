"""How one GPU's memory is split between the embedder and vLLM (made-up numbers)."""

from __future__ import annotations

import pytest

from rag_appliance.errors import SettingsError
from rag_appliance.generation.memory import GIB, describe_split, vllm_gpu_share


def test_share_is_budget_minus_embedder_fraction() -> None:
    assert vllm_gpu_share(80 * GIB, 8 * GIB, 0.9) == pytest.approx(0.8)


def test_no_embedder_on_gpu_gives_the_whole_budget() -> None:
    assert vllm_gpu_share(24 * GIB, 0, 0.85) == pytest.approx(0.85)


def test_negative_embedder_bytes_count_as_zero() -> None:
    assert vllm_gpu_share(24 * GIB, -5, 0.9) == pytest.approx(0.9)


def test_too_little_left_is_a_clear_one_line_error() -> None:
    with pytest.raises(SettingsError) as info:
        vllm_gpu_share(16 * GIB, 14 * GIB, 0.9)
    message = str(info.value)
    assert "\n" not in message
    assert "14.00 GiB" in message and "16.00 GiB" in message and "gpu_memory_budget" in message


def test_just_at_the_floor_is_refused() -> None:
    with pytest.raises(SettingsError):
        vllm_gpu_share(100, 85, 0.9)  # 0.05 left: not more than the floor


def test_embedder_larger_than_the_gpu_is_refused() -> None:
    with pytest.raises(SettingsError):
        vllm_gpu_share(8 * GIB, 20 * GIB, 1.0)


@pytest.mark.parametrize(("total", "budget"), [(0, 0.9), (-1, 0.9), (GIB, 0.0), (GIB, 1.5)])
def test_bad_inputs_are_refused(total: int, budget: float) -> None:
    with pytest.raises(SettingsError):
        vllm_gpu_share(total, 0, budget)


def test_split_log_line() -> None:
    line = describe_split(2 * GIB, 0.8, 0.9)
    assert line == "GPU memory split: embedder 2.00 GiB, vLLM share 0.800 (of budget 0.9)"
