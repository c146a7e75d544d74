"""The follow-up search text and the turn-by-turn fitting of a conversation."""

from __future__ import annotations

from rag_appliance.chat.history import fit_turns, newest_turn, retrieval_query, without_markers
from rag_appliance.generation.base import Message


def conversation(turns: int) -> list[Message]:
    msgs = [Message("system", "be brief")]
    for n in range(turns):
        msgs += [Message("user", f"question {n}"), Message("assistant", f"answer {n}")]
    return [*msgs, Message("user", "newest")]


def words(messages: list[Message]) -> int:
    return sum(len(m.content.split()) for m in messages)


def test_a_first_question_is_searched_as_is() -> None:
    assert retrieval_query([Message("user", "  Who built the bridge? ")], 3) == (
        "Who built the bridge?"
    )


def test_a_follow_up_carries_earlier_user_turns_between_two_copies_of_itself() -> None:
    msgs = [
        Message("user", "When was the Vellmoor Lighthouse lit?"),
        Message("assistant", "In 1887 [1]."),
        Message("user", "Who was its last keeper?"),
    ]
    assert retrieval_query(msgs, 3) == (
        "Who was its last keeper?\nWhen was the Vellmoor Lighthouse lit?\nWho was its last keeper?"
    )
    assert retrieval_query(msgs, 0) == "Who was its last keeper?"


def test_only_the_last_n_earlier_user_turns_are_used() -> None:
    query = retrieval_query(conversation(5), 2)
    assert query.split("\n") == ["newest", "question 3", "question 4", "newest"]


def test_no_user_text_gives_an_empty_query() -> None:
    assert retrieval_query([Message("system", "x"), Message("user", "  ")], 3) == ""


def test_everything_fits_when_there_is_room() -> None:
    msgs = conversation(3)
    fitted = fit_turns(msgs, words, 1000)
    assert fitted.messages == msgs
    assert fitted.dropped == 0


def test_oldest_whole_turns_go_first() -> None:
    msgs = conversation(4)
    # system (2 words) + newest (1) + two turns of 4 words each fit in 11
    fitted = fit_turns(msgs, words, 11)
    assert [m.content for m in fitted.messages] == [
        "be brief",
        "question 2",
        "answer 2",
        "question 3",
        "answer 3",
        "newest",
    ]
    assert fitted.dropped == 4


def test_the_system_prompt_and_newest_turn_stay_even_when_nothing_else_fits() -> None:
    fitted = fit_turns(conversation(2), words, 0)
    assert [m.content for m in fitted.messages] == ["be brief", "newest"]
    assert fitted.dropped == 4
    assert newest_turn(conversation(2)) == fitted.messages


def test_kept_history_is_contiguous() -> None:
    msgs = [
        Message("user", "a " * 50),
        Message("assistant", "long " * 50),
        Message("user", "short"),
        Message("assistant", "ok"),
        Message("user", "tiny " * 30),
        Message("assistant", "x"),
        Message("user", "newest"),
    ]
    fitted = fit_turns(msgs, words, 10)
    # the 31-word turn does not fit, so the short turn before it is not kept either
    assert [m.content for m in fitted.messages] == ["newest"]
    assert fitted.dropped == 6


def test_earlier_answers_lose_their_stale_markers() -> None:
    msgs = [
        Message("user", "q [1]"),
        Message("assistant", "It was lit in 1887 [1][2]. Then [3, 4] it closed."),
        Message("user", "and then?"),
    ]
    out = without_markers(msgs)
    assert out[1].content == "It was lit in 1887. Then it closed."
    assert out[0] == msgs[0] and out[2] == msgs[2]
