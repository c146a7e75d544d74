"""Deterministic benchmark corpus of real English, cut from CPython standard-library docstrings."""

from __future__ import annotations

import ast
import json
import random
import re
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

# Bucket name -> (words per text, number of texts).
BUCKETS: dict[str, tuple[int, int]] = {
    "short": (12, 16_384),
    "medium": (90, 4_096),
    "long": (350, 2_048),
}
_VERSION = 2
_SEED = 20_261_126
_CACHE = Path(__file__).resolve().parent / ".cache"
_BLANK_LINE = re.compile(r"\n\s*\n")
# reST tables, rules and underlines ("=====", "-----"): not prose, and token-heavy.
_RULE = re.compile(r"([=\-~*_#+^])\1{3,}")
_DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _stdlib_sources() -> Iterator[Path]:
    """The standard library's own .py files in a fixed order, tests and third-party left out."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        parts = set(path.relative_to(root).parts)
        if "site-packages" in parts or "dist-packages" in parts:
            continue
        if any(p == "test" or p == "tests" or p.startswith("test_") for p in parts):
            continue
        yield path


def _paragraphs(source: str) -> Iterator[str]:
    """Prose paragraphs of every docstring in one module, whitespace collapsed, doctests skipped."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return
    for node in ast.walk(tree):
        if not isinstance(node, _DOC_NODES):
            continue
        doc = ast.get_docstring(node)
        if not doc:
            continue
        for block in _BLANK_LINE.split(doc):
            text = " ".join(block.split())
            if len(text.split()) < 6 or text.startswith((">>>", "...")) or _RULE.search(text):
                continue
            yield text


def build_corpus() -> dict[str, list[str]]:
    """Sample fixed-length word windows from the shuffled stream of stdlib docstring paragraphs."""
    seen: dict[str, None] = {}
    for path in _stdlib_sources():
        for para in _paragraphs(path.read_text(encoding="utf-8", errors="ignore")):
            seen.setdefault(para, None)
    paragraphs = list(seen)
    rng = random.Random(_SEED)
    rng.shuffle(paragraphs)
    words = " ".join(paragraphs).split()
    corpus: dict[str, list[str]] = {}
    for name, (length, count) in BUCKETS.items():
        starts = [rng.randrange(len(words) - length) for _ in range(count)]
        corpus[name] = [" ".join(words[s : s + length]) for s in starts]
    return corpus


def cache_path() -> Path:
    """Where the corpus for this Python version is cached (the stdlib differs across versions)."""
    tag = f"py{sys.version_info.major}.{sys.version_info.minor}"
    return _CACHE / f"corpus-v{_VERSION}-{tag}.json"


def load_corpus() -> dict[str, list[str]]:
    """The corpus, built once and then read from `bench/.cache/`."""
    path = cache_path()
    if path.is_file():
        cached: dict[str, list[str]] = json.loads(path.read_text(encoding="utf-8"))
        return cached
    corpus = build_corpus()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(corpus), encoding="utf-8")
    tmp.replace(path)
    return corpus


if __name__ == "__main__":
    loaded = load_corpus()
    for bucket, texts in loaded.items():
        mean = sum(len(t.split()) for t in texts) / len(texts)
        print(f"{bucket}: {len(texts)} texts, {mean:.0f} words each; e.g. {texts[0][:72]!r}")
    print(f"cached at {cache_path()}")
