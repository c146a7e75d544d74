"""VllmGenerator's settings helpers: CPU thread binding and the served name."""

from __future__ import annotations

from rag_appliance.generation.vllm_engine import cpu_thread_env, served_name
from rag_appliance.settings import GenerationSettings


def test_cpu_threads_unset_leaves_vllm_auto_binding() -> None:
    assert cpu_thread_env(None, {}, [0, 1, 2, 3]) == {}


def test_cpu_threads_binds_the_first_usable_cpus() -> None:
    assert cpu_thread_env(2, {}, [3, 1, 2, 0]) == {"VLLM_CPU_OMP_THREADS_BIND": "0,1"}


def test_cpu_threads_beyond_the_machine_use_every_cpu() -> None:
    assert cpu_thread_env(8, {}, [0, 1]) == {"VLLM_CPU_OMP_THREADS_BIND": "0,1"}


def test_operator_binding_wins_over_settings() -> None:
    assert cpu_thread_env(1, {"VLLM_CPU_OMP_THREADS_BIND": "2-3"}, [0, 1, 2, 3]) == {}


def test_served_name_defaults() -> None:
    assert served_name(GenerationSettings()) == "SmolLM2-135M-Instruct"
    assert served_name(GenerationSettings(model="HuggingFaceTB/SmolLM2-135M-Instruct")) == (
        "SmolLM2-135M-Instruct"
    )
    assert served_name(GenerationSettings(model="Qwen/Qwen2.5-0.5B-Instruct")) == (
        "Qwen/Qwen2.5-0.5B-Instruct"
    )
    assert served_name(GenerationSettings(model="x", served_name="chat")) == "chat"
