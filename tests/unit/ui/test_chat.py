"""The chat handlers: Stop at any moment keeps the conversation and closes the engine's stream;
failures give the question back; answers carry their citations and the retrieval notice."""

from __future__ import annotations

import asyncio
import html
import threading
from collections.abc import AsyncIterator
from typing import Any

from rag_appliance.ui.chat import ChatActions, until
from rag_appliance.ui.conversation import STOPPED
from tests.unit.ui.conftest import REPLY, Request, Rig

QUESTION = "Where do the goats graze?"


def asked(question: str = QUESTION) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


async def collect(outputs: AsyncIterator[Any]) -> list[Any]:
    return [o async for o in outputs]


def answer(chat: ChatActions, history: Any, request: Request, **kw: Any) -> AsyncIterator[Any]:
    collection = kw.pop("collection", "kb")
    return chat.answer(history, collection, kw.pop("plain", False), 3, 0.0, 32, request)  # type: ignore[arg-type]


async def test_an_answer_streams_then_shows_its_citations(rig: Rig) -> None:
    chat = ChatActions(lambda: rig.services)
    outputs = await collect(answer(chat, asked(), Request()))
    history, box, panel, saved = outputs[-1]
    assert history[-1] == {"role": "assistant", "content": REPLY}
    assert box == "" or box == {"__type__": "update"}
    assert "Answered:" in panel and 'class="source cited"' in panel and "goats.txt" in panel
    assert saved == {"owner": "", "messages": history}
    # It streamed: the answer grew word by word before the final yield.
    texts = [o[0][-1]["content"] for o in outputs if isinstance(o[0], list)]
    assert texts[0] == "" and any(0 < len(t) < len(REPLY) for t in texts)


async def test_stop_before_the_first_token_keeps_the_question(rig: Rig) -> None:
    rig.generator.open_words = 0
    chat = ChatActions(lambda: rig.services)
    request = Request()
    await chat.ask(QUESTION, [], request)  # type: ignore[arg-type]
    task = asyncio.create_task(collect(answer(chat, asked(), request)))
    await asyncio.wait_for(rig.generator.waiting.wait(), 10)
    await chat.stop(request)  # type: ignore[arg-type]
    outputs = await asyncio.wait_for(task, 10)
    history, _, panel, saved = outputs[-1]
    assert history == [*asked(), {"role": "assistant", "content": STOPPED}]
    assert "Stopped after" in panel and "before the first token" in panel
    assert "Error" not in panel
    assert saved["messages"] == history
    assert rig.generator.closed == 1  # the engine's stream was closed, not left running
    assert not chat._stops and not chat._answering  # nothing left behind for the session


async def test_stop_mid_answer_keeps_what_was_said(rig: Rig) -> None:
    rig.generator.open_words = 3
    chat = ChatActions(lambda: rig.services)
    request = Request()
    await chat.ask(QUESTION, [], request)  # type: ignore[arg-type]
    task = asyncio.create_task(collect(answer(chat, asked(), request)))
    await asyncio.wait_for(rig.generator.waiting.wait(), 10)
    await chat.stop(request)  # type: ignore[arg-type]
    history, _, panel, _ = (await asyncio.wait_for(task, 10))[-1]
    content = history[-1]["content"]
    assert content.endswith("\n\n" + STOPPED) and content.startswith("Goats")
    assert "Stopped after" in panel and rig.generator.closed == 1


async def test_stop_during_retrieval(rig: Rig) -> None:
    rig.encoder.gate = threading.Event()  # the query embedding hangs in the model thread
    chat = ChatActions(lambda: rig.services)
    request = Request()
    await chat.ask(QUESTION, [], request)  # type: ignore[arg-type]
    task = asyncio.create_task(collect(answer(chat, asked(), request)))
    await asyncio.wait_for(asyncio.to_thread(rig.encoder.entered.wait, 10), 15)
    await chat.stop(request)  # type: ignore[arg-type]
    try:
        history, _, panel, _ = (await asyncio.wait_for(task, 5))[-1]
    finally:
        rig.encoder.gate.set()
    assert history[-1] == {"role": "assistant", "content": STOPPED}
    assert "before the first token" in panel


async def test_a_closed_page_closes_the_engine_stream(rig: Rig) -> None:
    rig.generator.open_words = 2
    chat = ChatActions(lambda: rig.services)
    task = asyncio.create_task(collect(answer(chat, asked(), Request())))
    await asyncio.wait_for(rig.generator.waiting.wait(), 10)
    task.cancel()  # what gradio does when the browser goes away
    done, _ = await asyncio.wait({task}, timeout=10)
    assert done and task.cancelled()
    assert rig.generator.closed == 1 and not chat._answering


async def test_stop_is_per_session(rig: Rig) -> None:
    rig.generator.open_words = 1
    chat = ChatActions(lambda: rig.services)
    a, b = Request("a"), Request("b")
    for request in (a, b):
        await chat.ask(QUESTION, [], request)  # type: ignore[arg-type]
    first = asyncio.create_task(collect(answer(chat, asked(), a)))
    second = asyncio.create_task(collect(answer(chat, asked(), b)))
    await asyncio.wait_for(rig.generator.waiting.wait(), 10)
    await asyncio.sleep(0.1)  # both at the gate
    await chat.stop(a)  # type: ignore[arg-type]
    stopped = await asyncio.wait_for(first, 10)
    assert stopped[-1][0][-1]["content"].endswith(STOPPED)
    assert not second.done()
    rig.generator.gate.set()
    finished = await asyncio.wait_for(second, 10)
    assert finished[-1][0][-1]["content"] == REPLY


async def test_ask_shows_the_question_and_refuses_a_second_one_meanwhile(rig: Rig) -> None:
    chat = ChatActions(lambda: rig.services)
    request = Request()
    previous = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    history, box = await chat.ask("  Next?  ", previous, request)  # type: ignore[arg-type]
    assert history == [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Next?"}]
    assert box == ""
    chat._answering.add(request.session_hash)
    assert await chat.ask("Again?", history, request) == (  # type: ignore[arg-type]
        {"__type__": "update"},
        {"__type__": "update"},
    )


async def test_a_failed_question_comes_back_to_the_box(rig: Rig) -> None:
    chat = ChatActions(lambda: rig.services)
    past = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    history = [*past, {"role": "user", "content": "Anything?"}]
    outputs = await collect(answer(chat, history, Request(), collection="no-such"))
    shown, box, panel, saved = outputs[-1]
    assert shown == past and box == "Anything?"
    assert "collection 'no-such' does not exist" in html.unescape(panel)
    assert saved == {"__type__": "update"}  # nothing saved


async def test_the_retrieval_notice_is_shown(rig: Rig) -> None:
    chat = ChatActions(lambda: rig.services)
    _, _, panel, _ = (await collect(answer(chat, asked(), Request(), collection="empty")))[-1]
    assert "No passages in collection" in panel and "not grounded" in panel


async def test_plain_chat_says_no_documents_were_retrieved(rig: Rig) -> None:
    chat = ChatActions(lambda: rig.services)
    _, _, panel, _ = (await collect(answer(chat, asked(), Request(), plain=True)))[-1]
    assert "Plain chat: no documents were retrieved." in panel
    assert "Answered:" in panel


async def test_a_stopped_turn_is_not_sent_to_the_model(rig: Rig) -> None:
    chat = ChatActions(lambda: rig.services)
    history = [
        {"role": "user", "content": "First?"},
        {"role": "assistant", "content": STOPPED},
        {"role": "user", "content": "Second?"},
        {"role": "assistant", "content": "Half an answer\n\n" + STOPPED},
        {"role": "user", "content": QUESTION},
    ]
    await collect(answer(chat, history, Request(), plain=True))
    sent = [(m.role, m.content) for m in rig.generator.messages[-1]]
    assert sent == [("user", "Second?"), ("assistant", "Half an answer"), ("user", QUESTION)]


def test_restore_and_clear_belong_to_the_user() -> None:
    chat = ChatActions(lambda: None)
    messages = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    mine = {"owner": "ann", "messages": messages}
    assert chat.restore(mine, Request(username="ann")) == messages  # type: ignore[arg-type]
    assert chat.restore(mine, Request(username="bob")) == []  # type: ignore[arg-type]
    assert chat.restore("junk", Request()) == []  # type: ignore[arg-type]
    history, _, saved = chat.clear(Request(username="ann"))  # type: ignore[arg-type]
    assert history == [] and saved == {"owner": "ann", "messages": []}


async def test_until_returns_the_result_or_cancels_the_work() -> None:
    stop = asyncio.Event()
    assert await until(asyncio.sleep(0, result=7), stop) == 7
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            cancelled.set()

    waiting = asyncio.create_task(until(forever(), stop))
    await asyncio.sleep(0.01)
    stop.set()
    assert type(await waiting).__name__ == "_Stopped" and cancelled.is_set()
    assert type(await until(forever(), stop)).__name__ == "_Stopped"  # already set: not started
