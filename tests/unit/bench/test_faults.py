"""bench/faults.py's pure helpers: when the server counts as recovered, the consistency checks,
and the swept count read from a server log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def faults(bench_module: Callable[[str], Any]) -> Any:
    return bench_module("faults")


def test_recovered_after_needs_a_run_of_fast_answers_after_the_stop(faults: Any) -> None:
    probes = [
        (9.0, 200, 0.01),  # before the stop: ignored
        (10.1, 429, 0.001),  # refused: breaks a run
        (10.3, 200, 0.01),
        (10.5, 200, 0.30),  # slow: breaks it again
        (10.7, 200, 0.01),
        (10.9, 200, 0.02),
        (11.1, 200, 0.01),
    ]
    assert faults.recovered_after(probes, 10.0, 0.05, 3) == pytest.approx(0.7)
    assert faults.recovered_after(probes, 10.0, 0.05, 4) is None
    assert faults.recovered_after(probes[::-1], 10.0, 0.05, 3) == pytest.approx(0.7)  # any order
    assert faults.recovered_after([], 10.0, 0.05, 1) is None


def test_consistency_names_every_disagreement(faults: Any) -> None:
    listed = {"a": 2, "b": 3}
    good = {"documents": 2, "points": 5, "pending_points": 0}
    assert faults.consistency(good, listed) == []
    bad = {"documents": 0, "points": 256, "pending_points": 7}
    assert faults.consistency(bad, listed) == [
        "7 uncommitted points left",
        "documents 0 but 2 listed",
        "points 256 but the listed documents have 5 chunks",
    ]


def test_swept_chunks_adds_up_the_start_log(faults: Any) -> None:
    text = (
        "WARNING rag_appliance.services: collection 'kb': deleted 192 chunks of an unfinished "
        "index\nINFO other\nWARNING ... collection 'b': deleted 8 chunks of an unfinished index"
    )
    assert faults.swept_chunks(text) == 200
    assert faults.swept_chunks("nothing here") == 0
    assert faults.median([]) is None and faults.median([3.0, 1.0, 2.0]) == 2.0
