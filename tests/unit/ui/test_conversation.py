"""The conversation as shown, as sent to the model, and as saved in the browser."""

from __future__ import annotations

from rag_appliance.ui.conversation import (
    MAX_SAVED_CHARS,
    STOPPED,
    model_messages,
    plain,
    restored,
    saved,
    stopped,
)


def test_plain_keeps_user_and_assistant_text() -> None:
    history = [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}], "metadata": None},
        {"role": "system", "content": "ignored"},
        {"role": "assistant", "content": "Hello"},
        "junk",
    ]
    assert plain(history) == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ]
    assert plain(None) == []


def test_stopped_answers_are_marked_and_left_out_for_the_model() -> None:
    assert stopped("") == STOPPED and stopped("Half") == f"Half\n\n{STOPPED}"
    history = [
        {"role": "user", "content": "A?"},
        {"role": "assistant", "content": stopped("")},
        {"role": "user", "content": "B?"},
        {"role": "assistant", "content": stopped("Half")},
        {"role": "user", "content": "C?"},
    ]
    sent = [(m.role, m.content) for m in model_messages(history)]
    assert sent == [("user", "B?"), ("assistant", "Half"), ("user", "C?")]


def test_saved_keeps_the_newest_turns_that_fit_and_whose_they_are() -> None:
    history = [
        {"role": "user", "content": "x" * (MAX_SAVED_CHARS // 2)},
        {"role": "assistant", "content": "y" * (MAX_SAVED_CHARS // 2)},
        {"role": "user", "content": "new"},
        {"role": "assistant", "content": "answer"},
    ]
    value = saved("ann", history)
    # The oldest question no longer fits; its answer alone would open the conversation oddly.
    assert value == {"owner": "ann", "messages": history[2:]}
    assert saved(None, [])["owner"] == ""


def test_restored_only_for_its_owner_and_only_clean_messages() -> None:
    messages = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    assert restored({"owner": "", "messages": messages}, None) == messages
    assert restored({"owner": "ann", "messages": messages}, "bob") == []
    assert restored({"owner": "", "messages": "nope"}, None) == []
    assert restored(None, None) == []
    dirty = [{"role": "user", "content": ""}, {"role": "tool", "content": "x"}, *messages]
    assert restored({"owner": "", "messages": dirty}, None) == messages
