"""The chat history as the page keeps it: plain messages, the Stop note, what the browser saves.

The Chatbot hands back gradio's normalised messages (content as a list of parts); everything
here works on plain {"role", "content": str} dicts so that what is shown, what is sent to the
model and what is saved in the browser are the same list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rag_appliance.generation.base import Message
from rag_appliance.ui.render import message_text

History = list[dict[str, str]]

# Shown after an answer that Stop ended; left out of what the model sees next time.
STOPPED = "*(stopped)*"
_STOPPED_SUFFIX = "\n\n" + STOPPED
# The browser's localStorage holds a few MB per site: keep the saved conversation well inside.
MAX_SAVED_MESSAGES = 100
MAX_SAVED_CHARS = 200_000


def plain(history: Sequence[Any] | None) -> History:
    """User and assistant messages as plain text (anything else a client sends is dropped)."""
    messages: History = []
    for m in history or []:
        if isinstance(m, dict) and m.get("role") in ("user", "assistant"):
            messages.append({"role": str(m["role"]), "content": message_text(m.get("content"))})
    return messages


def stopped(answer: str) -> str:
    """The text of an answer that Stop ended (nothing generated: just the note)."""
    return answer + _STOPPED_SUFFIX if answer.strip() else STOPPED


def model_messages(history: History) -> list[Message]:
    """The conversation as the model sees it: Stop notes removed, and a question whose answer
    was stopped before any text left out with it (templates want user/assistant turns)."""
    messages: list[Message] = []
    for i, m in enumerate(history):
        content = m["content"]
        if m["role"] == "assistant":
            if content == STOPPED:
                continue
            content = content.removesuffix(_STOPPED_SUFFIX)
        elif i + 1 < len(history) and history[i + 1] == {"role": "assistant", "content": STOPPED}:
            continue
        messages.append(Message(m["role"], content))
    return messages


def saved(owner: str | None, history: History) -> dict[str, Any]:
    """What the browser keeps: the newest messages that fit, and whose they are."""
    kept: History = []
    size = 0
    for m in reversed(history[-MAX_SAVED_MESSAGES:]):
        size += len(m["content"])
        if size > MAX_SAVED_CHARS:
            break
        kept.append(m)
    # An odd start (an assistant message first) reads oddly and templates may refuse it.
    kept.reverse()
    while kept and kept[0]["role"] != "user":
        kept.pop(0)
    return {"owner": owner or "", "messages": kept}


def restored(value: Any, owner: str | None) -> History:
    """The saved conversation, only for the user who saved it (a shared browser, several keys)."""
    if not isinstance(value, dict) or value.get("owner") != (owner or ""):
        return []
    messages = value.get("messages")
    if not isinstance(messages, list):
        return []
    return [
        m
        for m in plain(messages)
        if isinstance(m["content"], str) and m["content"] and len(m["content"]) < MAX_SAVED_CHARS
    ]
