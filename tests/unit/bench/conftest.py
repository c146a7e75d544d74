"""The bench/ scripts as modules: they run as `python bench/<name>.py`, so bench/ joins sys.path."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"


@pytest.fixture
def bench_module(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Any]:
    """Import a module of bench/ by its name there (`gpu`, `lib.driver`, ...)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module
