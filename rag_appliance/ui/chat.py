"""The chat handlers: ask (show the question at once), answer (stream), Stop, Clear, restore.

Stop is not gradio's `cancels`: cancelling a running event turns every output it had not yet
written into an error badge, and drops the conversation. Instead each browser session has an
asyncio.Event that `ask` arms and `stop` sets; `answer` races every await (retrieval, each
token) against it, so Stop ends the answer at once, closes the engine's stream (vLLM aborts
the request) and leaves the conversation as it was, with a "(stopped)" note.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Collection, Coroutine
from typing import Any, Final, TypeVar

import gradio as gr

from rag_appliance.auth import acting_as, iterate_as
from rag_appliance.chat.citations import Attributed
from rag_appliance.chat.loopguard import STOP_REASON, GuardedDeltas
from rag_appliance.chat.params import ChatParams, RetrievalOptions
from rag_appliance.chat.service import ChatService, PreparedChat
from rag_appliance.errors import InvalidRequest
from rag_appliance.feedback.service import FeedbackParams, submit_feedback
from rag_appliance.generation.base import Delta
from rag_appliance.ui.base import Handlers, ServicesGetter, report, username_of
from rag_appliance.ui.conversation import History, model_messages, plain, restored, saved, stopped
from rag_appliance.ui.render import answer_footer, stopped_footer
from rag_appliance.ui.render_html import error_html, para, sources_html

log = logging.getLogger(__name__)

T = TypeVar("T")
# answer's outputs: the chatbot, the question box, the sources panel, the saved conversation.
Outputs = tuple[Any, Any, Any, Any]


class _Stopped:
    """The value `until` returns when Stop won the race."""


STOPPED: Final = _Stopped()
NO_SOURCES = "The sources of the latest answer appear here; click one to read its document."


async def until(work: Coroutine[Any, Any, T], stop: asyncio.Event) -> T | _Stopped:
    """The work's result, or STOPPED as soon as `stop` is set (the work is then cancelled)."""
    if stop.is_set():
        work.close()
        return STOPPED
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this handler itself was cancelled (the page closed)
        task.cancel()
        # Its cleanup first: a stream cannot be closed while a read of it is still running.
        await asyncio.wait({task})
        raise
    finally:
        waiter.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.wait({task})  # let its cleanup run (a stream's abort) before going on
    if not task.cancelled() and task.exception() is not None:
        log.debug("work ended by Stop failed while cancelling", exc_info=task.exception())
    return STOPPED


async def next_delta(deltas: AsyncIterator[Delta]) -> Delta | None:
    """The stream's next delta, or None at its end."""
    try:
        return await deltas.__anext__()
    except StopAsyncIteration:
        return None


def session_of(request: gr.Request | None) -> str:
    """The browser session an event came from (one Stop per session)."""
    return str(getattr(request, "session_hash", None) or "")


def owner_of(request: gr.Request | None) -> str | None:
    """The signed-in user name (None when the UI is open)."""
    return username_of(request)


class ChatActions(Handlers):
    """Chat with the selected collection (or plainly), one Stop per browser session."""

    def __init__(self, services: ServicesGetter) -> None:
        super().__init__(services)
        self._stops: dict[str, asyncio.Event] = {}  # session -> its answer's Stop
        self._answering: set[str] = set()  # sessions with an answer in progress

    async def ask(self, message: str, history: Any, request: gr.Request) -> tuple[Any, Any]:
        """Put the question into the conversation at once and arm Stop (chatbot, textbox)."""
        question = (message or "").strip()
        session = session_of(request)
        if not question:
            return gr.skip(), gr.skip()
        if session in self._answering:
            gr.Warning("An answer is still coming: wait for it, or press Stop.")
            return gr.skip(), gr.skip()
        self._stops[session] = asyncio.Event()
        return [*plain(history), {"role": "user", "content": question}], ""

    async def stop(self, request: gr.Request) -> None:
        """Stop this session's answer (a no-op when none is running)."""
        event = self._stops.get(session_of(request))
        if event is not None:
            event.set()

    def restore(self, value: Any, request: gr.Request) -> History:
        """Page load: the conversation this browser saved for this user."""
        return restored(value, owner_of(request))

    def clear(self, request: gr.Request) -> tuple[History, str, dict[str, Any]]:
        """Forget the conversation (here and in the browser's storage)."""
        return [], para(NO_SOURCES, "muted"), saved(owner_of(request), [])

    async def answer(
        self,
        history: Any,
        collection: str | None,
        plain_chat: bool,
        top_k: float,
        temperature: float,
        max_tokens: float | None,
        request: gr.Request | None = None,
    ) -> AsyncIterator[Outputs]:
        """Answer the conversation's last question, streaming, as the session's key (each step
        acts as it: Gradio may run them in different tasks); yields (chatbot, textbox,
        sources, saved conversation)."""
        messages = plain(history)
        if not messages or messages[-1]["role"] != "user":
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        session = session_of(request)
        # Without a page session (a script) there is no Stop button: a private, unset event.
        stop = self._stops.setdefault(session, asyncio.Event()) if session else asyncio.Event()
        self._answering.add(session)
        try:
            try:
                principal = self.principal(request)
            except Exception as exc:  # nothing asked: the question goes back to the box
                failure = error_html(report(exc, "chat"))
                yield messages[:-1], messages[-1]["content"], failure, gr.skip()
                return
            length = int(max_tokens) if max_tokens else None  # None: generation.max_tokens
            settings = (collection, plain_chat, int(top_k), float(temperature), length)
            answering = self._answer(messages, settings, stop, owner_of(request))
            try:
                async for outputs in iterate_as(principal, answering):
                    yield outputs
            finally:  # a closed page: the answer's own cleanup closes the engine's stream
                with acting_as(principal):
                    await answering.aclose()
        finally:
            self._answering.discard(session)
            if self._stops.get(session) is stop:
                del self._stops[session]

    async def _answer(
        self, messages: History, settings: tuple[Any, ...], stop: asyncio.Event, owner: str | None
    ) -> AsyncGenerator[Outputs, None]:
        collection, plain_chat, top_k, temperature, max_tokens = settings
        past, question = messages[:-1], messages[-1]["content"]
        skip = gr.skip()
        started = time.perf_counter()
        try:
            chat = self.services().require_chat()
            rag = None
            if not plain_chat:
                if not collection:
                    raise InvalidRequest("choose a collection, or tick 'Plain chat'")
                rag = chat.retrieval(None, RetrievalOptions(collection, top_k=top_k))
            params = ChatParams(
                messages=model_messages(messages),
                max_tokens=max_tokens,
                temperature=temperature,
                rag=rag,
            )
            params = chat.with_defaults(params)  # RAG's anti-loop penalties, as for the API
            prepared = await until(chat.prepare(params), stop)
        except Exception as exc:
            # Nothing was answered: keep the conversation as it was and give the question back.
            yield past, question, error_html(report(exc, "chat")), skip
            return
        if isinstance(prepared, _Stopped):
            shown = [*messages, {"role": "assistant", "content": stopped("")}]
            panel = para(stopped_footer(None, _since(started)), "muted")
            yield shown, skip, panel, saved(owner, shown)
            return
        async for outputs in self._stream(chat, prepared, messages, collection, stop, owner):
            yield outputs

    async def _stream(
        self,
        chat: ChatService,
        prepared: PreparedChat,
        messages: History,
        collection: str | None,
        stop: asyncio.Event,
        owner: str | None,
    ) -> AsyncIterator[Outputs]:
        skip = gr.skip()
        sources = chat.sources(prepared)
        # Passages cut for the context budget, none found, earlier turns left out: said here.
        notice = prepared.retrieval.notice() if prepared.retrieval is not None else None
        name = collection or ""

        def panel(
            footer: str | None = None, cited: Collection[int] = (), logged: str | None = None
        ) -> str:
            return sources_html(
                name, sources, cited=cited, notice=notice, footer=footer, feedback_id=logged
            )

        def with_answer(text: str) -> History:
            return [*messages, {"role": "assistant", "content": text}]

        yield with_answer(""), "", panel(), skip
        answer = ""
        last: Delta | None = None
        started = time.perf_counter()
        deltas: GuardedDeltas | None = None
        was_stopped = False
        request_id = f"ui-{uuid.uuid4().hex}"  # the engine's and the search log's id
        try:
            # As the API streams: the loop guard, and invalid [n] markers filtered out.
            deltas = chat.guarded_stream(prepared, request_id)
            while (delta := await until(next_delta(deltas), stop)) is not None:
                if isinstance(delta, _Stopped):
                    was_stopped = True
                    break
                answer += delta.text
                last = delta
                if delta.text:
                    yield with_answer(answer), skip, skip, skip
        except Exception as exc:
            failure = error_html(report(exc, "chat"))
            if answer:  # keep what was generated, marked as cut short
                shown = with_answer(answer)
                yield shown, skip, panel() + failure, saved(owner, shown)
            else:
                yield messages[:-1], messages[-1]["content"], failure, skip
            return
        finally:  # a closed page or Stop must not keep the engine generating
            if deltas is not None:
                await _close(deltas)
        seconds = _since(started)
        final = await self._attributed(chat, prepared, answer, collection, request_id)
        # Thumbs on the sources once the answer is in the search log (search_log.enabled).
        logged = request_id if chat.search_log and chat.search_log.known(request_id) else None
        if was_stopped:
            text, footer = stopped(final.text), stopped_footer(last, seconds)
        else:
            looped = deltas is not None and deltas.stop_reason == STOP_REASON
            text, footer = final.text, answer_footer(last, seconds, looped=looped)
        shown = with_answer(text)
        # The footer also tells a watcher (or a browser test) that the answer is done.
        yield shown, skip, panel(footer, final.cited, logged), saved(owner, shown)

    async def _attributed(
        self,
        chat: ChatService,
        prepared: PreparedChat,
        text: str,
        collection: str | None,
        request_id: str | None = None,
    ) -> Attributed:
        """The answer with its [n] markers checked and added (the API's final text)."""
        if prepared.sources is None or not text.strip():
            return Attributed(text)
        try:
            return await chat.attribute(
                prepared, text, collection=collection or None, request_id=request_id
            )
        except Exception:  # the answer itself is fine: show it as generated
            log.warning("web UI: attributing citations failed", exc_info=True)
            return Attributed(text)

    async def feedback(self, evt: gr.EventData, request: gr.Request | None = None) -> None:
        """A thumb on a source: feedback on that passage as the session's key, through the
        service behind POST /v1/feedback; a toast says how it went."""
        data = getattr(evt, "_data", None) or {}
        label, chunk = data.get("label"), data.get("chunk_id")
        try:
            with self.acting(request):
                if label not in ("positive", "negative") or not isinstance(chunk, str):
                    raise InvalidRequest("feedback needs a source and a thumb up or down")
                params = FeedbackParams(str(data.get("event_id") or ""), label, (chunk,))
                await submit_feedback(self.services().search_log, params)
        except Exception as exc:
            report(exc, "feedback")
            return
        gr.Info("Thanks: your feedback on this source is recorded.")


def _since(started: float) -> float:
    return time.perf_counter() - started


async def _close(deltas: AsyncIterator[Delta]) -> None:
    aclose = getattr(deltas, "aclose", None)
    if aclose is not None:
        await aclose()
