"""What a benchmark ran on (CPU or GPU, library versions), and the process set-up they share."""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np


def offline() -> None:
    """No Hugging Face Hub access (every model is local), unless the caller's environment says."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def quiet_transformers() -> None:
    """No "Loading weights" progress bars from transformers on stderr."""
    with contextlib.suppress(Exception):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def cpu_info() -> dict[str, Any]:
    """CPU model, cores and library versions, for a CPU benchmark's report header."""
    import sentence_transformers
    import torch

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "sentence_transformers": sentence_transformers.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def gpu_info(device: str) -> dict[str, Any]:
    """The GPU (or "cpu"), its driver, torch/CUDA/cuDNN and library versions."""
    import sentence_transformers
    import torch
    import transformers

    cudnn: Any = torch.backends.cudnn
    info: dict[str, Any] = {
        "device": device,
        "device_name": "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn.version() if cudnn.is_available() else None,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "python": platform.python_version(),
        "cpu_cores": os.cpu_count(),
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        info["device_name"] = torch.cuda.get_device_name(torch.device(device))
        info["device_memory_gib"] = round(props.total_memory / 2**30, 1)
        with contextlib.suppress(Exception):
            smi = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
            info["driver"] = subprocess.run(
                smi, capture_output=True, text=True, timeout=10, check=True
            ).stdout.splitlines()[0]
    return info


def resolve_device(wanted: str | None, script: str) -> str:
    """The device to run on (default: cuda if torch sees one); fails when CUDA is absent."""
    import torch

    if wanted is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"{script}: --device {wanted} but torch sees no CUDA device")
    return wanted


def free_device_memory() -> None:
    """Drop cached CUDA blocks so that the next part starts from a clean device."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
