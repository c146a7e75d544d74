"""bench/ as a whole: small files, no absolute paths, every script runnable from the root."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BENCH = ROOT / "bench"
SOURCES = sorted(p for p in BENCH.rglob("*.py") if ".cache" not in p.parts)
SCRIPTS = ("chat.py", "corpus.py", "embeddings.py", "gpu.py", "index.py", "seed_server.py")
MAX_LINES = 500


def test_the_shared_library_is_there() -> None:
    names = {p.relative_to(BENCH).as_posix() for p in SOURCES}
    assert {"lib/__init__.py", "lib/driver.py", "lib/load.py", "lib/servers.py"} <= names
    assert {"lib/machine.py", "lib/results.py", "lib/engine.py"} <= names
    assert set(SCRIPTS) <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(BENCH).as_posix())
def test_no_bench_file_is_long(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(BENCH).as_posix())
def test_no_absolute_paths(path: Path) -> None:
    """No string names a place on a machine's disk (URL paths such as /ready are fine)."""
    top = set(os.listdir("/")) - {"proc", "sys", "dev"}  # kernel files are the same everywhere
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            parts = node.value.split("/")
            if node.value.startswith("/") and len(parts) > 2 and parts[1] in top:
                pytest.fail(f"{path.name}:{node.lineno}: absolute path {node.value!r}")
    assert "/work/" not in path.read_text()


@pytest.mark.parametrize("script", ["embeddings.py", "gpu.py", "index.py", "chat.py"])
def test_every_script_starts_from_the_repository_root(script: str) -> None:
    """`python bench/<script> --help` finds its siblings and lib/ (bench/ is not a package)."""
    proc = subprocess.run(
        [sys.executable, f"bench/{script}", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage: ")
