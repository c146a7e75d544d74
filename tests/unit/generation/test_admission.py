"""The chat generator's admission by time: the expected wait from recent request durations."""

from __future__ import annotations

import pytest

from rag_appliance.generation.admission import WaitEstimate


def test_nothing_is_refused_before_a_request_has_finished() -> None:
    assert WaitEstimate(4).wait(1000) == 0.0


def test_requests_within_the_running_slots_do_not_wait() -> None:
    waits = WaitEstimate(4)
    waits.finished(10.0)
    assert waits.wait(4) == 0.0  # the 4th running request has a slot


def test_each_slot_round_ahead_costs_one_mean_duration() -> None:
    waits = WaitEstimate(4)
    waits.finished(10.0)
    assert waits.wait(5) == pytest.approx(2.5)  # one request ahead of the 5th, 4 slots
    assert waits.wait(12) == pytest.approx(20.0)  # 8 ahead: 8 x 10 s / 4


def test_the_mean_follows_recent_durations() -> None:
    waits = WaitEstimate(1)
    waits.finished(10.0)
    for _ in range(20):
        waits.finished(2.0)
    assert waits.mean_s == pytest.approx(2.0, abs=0.01)
    assert waits.wait(2) == pytest.approx(waits.mean_s)
