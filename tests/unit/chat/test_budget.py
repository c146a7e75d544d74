"""The one context-length check and the passage budget."""

from __future__ import annotations

import pytest

from rag_appliance.chat.budget import MIN_ANSWER, TokenBudget
from rag_appliance.errors import InvalidRequest


def test_completion_defaults_to_what_fits() -> None:
    assert TokenBudget(1000, None, 512).completion(100) == 512
    assert TokenBudget(1000, None, 512).completion(900) == 100  # capped by the room left


def test_requested_completion_is_honoured_or_refused() -> None:
    assert TokenBudget(1000, 300, 512).completion(700) == 300
    with pytest.raises(InvalidRequest) as info:
        TokenBudget(1000, 301, 512).completion(700)
    assert info.value.code == "context_length_exceeded" and "1001 tokens" in info.value.message


def test_prompt_filling_the_window_is_refused() -> None:
    with pytest.raises(InvalidRequest) as info:
        TokenBudget(1000, None, 512).completion(1000)
    assert info.value.code == "context_length_exceeded" and info.value.param == "messages"


def test_passages_leave_room_for_conversation_and_answer() -> None:
    budget = TokenBudget(2048, None, 512)
    assert budget.answer_reserve() == 512
    assert budget.passages(100, 0.6) == int(2048 * 0.6)  # the share is the binding limit
    assert budget.passages(1400, 0.6) == 2048 - 1400 - 512  # the room is
    assert budget.passages(2000, 0.6) == 0  # never negative
    assert TokenBudget(2048, 100, 512).passages(1800, 0.6) == 2048 - 1800 - 100
    assert TokenBudget(40, None, 512).answer_reserve() == MIN_ANSWER
