"""How one GPU's memory is split between the embedder and vLLM (pure arithmetic)."""

from __future__ import annotations

from rag_appliance.errors import SettingsError

GIB = 1024**3
# Below this share vLLM cannot hold a useful KV cache next to its weights.
MIN_VLLM_SHARE = 0.05


def vllm_gpu_share(total_bytes: int, embedder_bytes: int, budget: float) -> float:
    """vLLM's gpu_memory_utilization: the process budget minus the embedder's measured share."""
    if total_bytes <= 0:
        raise SettingsError(f"GPU total memory must be positive, got {total_bytes} bytes")
    if not 0.0 < budget <= 1.0:
        raise SettingsError(f"generation.gpu_memory_budget must be in (0, 1], got {budget}")
    embedder_share = min(max(embedder_bytes, 0) / total_bytes, 1.0)
    # Rounded so that float noise cannot decide the floor check (0.9 - 0.85 > 0.05).
    share = round(min(max(budget - embedder_share, 0.0), 1.0), 4)
    if share <= MIN_VLLM_SHARE:
        raise SettingsError(
            f"GPU memory: the embedder uses {embedder_bytes / GIB:.2f} GiB of "
            f"{total_bytes / GIB:.2f} GiB, leaving vLLM a share of {share:.3f} of "
            f"generation.gpu_memory_budget={budget} (needs > {MIN_VLLM_SHARE}); raise the "
            "budget, use a smaller embedder, or run the embedder on CPU"
        )
    return share


def describe_split(embedder_bytes: int, share: float, budget: float) -> str:
    """The log line that states the split."""
    return (
        f"GPU memory split: embedder {embedder_bytes / GIB:.2f} GiB, "
        f"vLLM share {share:.3f} (of budget {budget})"
    )
