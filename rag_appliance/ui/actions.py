"""The UI's event handlers: they call the app's services directly (no HTTP hop to itself)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from rag_appliance.chat.params import ChatParams, RetrievalOptions
from rag_appliance.collections.service import DocumentInfo
from rag_appliance.errors import AppError, InvalidRequest, ServiceUnavailable
from rag_appliance.generation.base import Delta, Message
from rag_appliance.ingest.files import FileBlob, FileOutcome, index_files
from rag_appliance.services import Services
from rag_appliance.ui.render import (
    answer_footer,
    document_rows,
    documents_summary,
    error_markdown,
    message_text,
    sources_markdown,
)

log = logging.getLogger(__name__)

ServicesGetter = Callable[[], "Services | None"]
ChatHistory = list[dict[str, Any]]

# The documents table lists at most this many; the summary line gives the full count.
MAX_LISTED = 1000
_PAGE = 200
_GENERIC_ERROR = "Something went wrong; the details are in the server log."


def report(exc: BaseException, action: str) -> str:
    """A readable message for an error, shown as a toast; never a stack trace."""
    if isinstance(exc, AppError):
        message = exc.message
    else:  # ours or a library's bug: the user gets no internals, the log gets everything
        log.error("web UI: %s failed", action, exc_info=exc)
        message = _GENERIC_ERROR
    gr.Warning(message)
    return message


class Actions:
    """Handlers bound to a services getter (services may only exist once the app started)."""

    def __init__(self, services: ServicesGetter) -> None:
        self._get = services

    def services(self) -> Services:
        """The running services, or a 503 while the app is still starting."""
        services = self._get()
        if services is None or not services.running:
            raise ServiceUnavailable("the server is still starting; try again in a moment")
        return services

    # -- collections -----------------------------------------------------------------------

    async def collection_names(self) -> list[str]:
        """Names of every collection, sorted."""
        collections = self.services().require_collections()
        return sorted(info.name for info, _ in await collections.all())

    async def on_load(self, current: str | None) -> tuple[dict[str, Any], str]:
        """Page load: the collection choices (default selected) and a chat availability note."""
        note = ""
        try:
            services = self.services()
            if services.chat is None:  # generator disabled: say so before anyone asks
                note = error_markdown("chat is not available: the generator is disabled")
            names = await self.collection_names()
        except Exception as exc:
            return gr.update(), error_markdown(report(exc, "loading collections"))
        value = current or services.settings.rag.default_collection or (names[0] if names else None)
        return gr.update(choices=names, value=value), note

    async def refresh_collections(self, current: str | None) -> dict[str, Any]:
        """Reload the collection choices, keeping the current selection."""
        try:
            names = await self.collection_names()
        except Exception as exc:
            report(exc, "listing collections")
            return gr.update()
        return gr.update(choices=names, value=current)

    async def create_collection(self, name: str) -> tuple[dict[str, Any], Any, str]:
        """Create an empty collection for the served model and select it."""
        name = (name or "").strip()
        try:
            if not name:
                raise InvalidRequest("type a name for the new collection")
            await self.services().require_collections().ensure(name)
            names = await self.collection_names()
        except Exception as exc:
            return gr.update(), gr.update(), error_markdown(report(exc, "creating a collection"))
        gr.Info(f"Collection '{name}' is ready.")
        return gr.update(choices=names, value=name), "", ""

    # -- chat ------------------------------------------------------------------------------

    async def chat(
        self,
        message: str,
        history: ChatHistory | None,
        collection: str | None,
        plain: bool,
        top_k: float,
        temperature: float,
    ) -> AsyncIterator[tuple[Any, Any, Any]]:
        """Answer the message, streaming into the chatbot; yields (chatbot, textbox, sources)."""
        question = (message or "").strip()
        if not question:
            yield gr.skip(), gr.skip(), gr.skip()
            return
        past = [
            {"role": m["role"], "content": message_text(m["content"])}
            for m in history or []
            if m.get("role") in ("user", "assistant")
        ]
        turns = [*past, {"role": "user", "content": question}]
        try:
            chat = self.services().require_chat()
            rag = None
            if not plain:
                if not collection:
                    raise InvalidRequest("choose a collection, or tick 'Plain chat'")
                rag = chat.retrieval(None, RetrievalOptions(collection, top_k=int(top_k)))
            params = ChatParams(
                messages=[Message(t["role"], t["content"]) for t in turns],
                temperature=float(temperature),
                rag=rag,
            )
            prepared = await chat.prepare(params)
        except Exception as exc:
            # Nothing was answered: keep the conversation as it was and give the question back.
            yield past, question, error_markdown(report(exc, "chat"))
            return
        panel = sources_markdown(collection or "", chat.sources(prepared))
        shown = [*turns, {"role": "assistant", "content": ""}]
        yield shown, "", panel
        answer = ""
        last: Delta | None = None
        started = time.perf_counter()
        deltas = chat.stream(prepared, f"ui-{uuid.uuid4().hex}")
        try:
            async for delta in deltas:
                answer += delta.text
                last = delta
                shown = [*turns, {"role": "assistant", "content": answer}]
                yield shown, gr.skip(), gr.skip()
            # The closing line also tells a watcher (or a browser test) that the answer is done.
            yield (
                shown,
                gr.skip(),
                f"{panel}\n\n{answer_footer(last, time.perf_counter() - started)}",
            )
        except Exception as exc:
            failure = error_markdown(report(exc, "chat"))
            if answer:  # keep what was generated, marked as cut short
                yield shown, gr.skip(), f"{panel}\n\n{failure}"
            else:
                yield past, question, failure
        finally:  # a closed page or the Stop button must not keep the engine generating
            await _close(deltas)

    # -- documents -------------------------------------------------------------------------

    async def documents(
        self, collection: str | None
    ) -> tuple[list[list[Any]], dict[str, Any], str]:
        """The documents table, the delete picker's choices and a summary line."""
        if not collection:
            return [], gr.update(choices=[], value=None), "Choose or create a collection."
        try:
            collections = self.services().require_collections()
            _, total = await collections.get(collection)
            listed: list[DocumentInfo] = []
            cursor: str | None = None
            while len(listed) < MAX_LISTED:
                page, cursor = await collections.documents(collection, _PAGE, cursor)
                listed += page
                if cursor is None or not page:
                    break
        except Exception as exc:
            message = report(exc, "listing documents")
            return [], gr.update(choices=[], value=None), error_markdown(message)
        listed = listed[:MAX_LISTED]
        ids = [d.id for d in listed]
        summary = documents_summary(collection, max(total, len(listed)), len(listed))
        return document_rows(listed), gr.update(choices=ids, value=None), summary

    async def delete_document(
        self, collection: str | None, doc_id: str | None
    ) -> tuple[list[list[Any]], dict[str, Any], str]:
        """Delete one document's chunks, then list the collection again."""
        try:
            if not collection or not doc_id:
                raise InvalidRequest("choose a collection and a document to delete")
            removed = (
                await self.services().require_collections().delete_document(collection, doc_id)
            )
        except Exception as exc:
            rows, picker, _ = await self.documents(collection)
            return rows, picker, error_markdown(report(exc, "deleting a document"))
        gr.Info(f"Deleted '{doc_id}' ({removed} chunks).")
        return await self.documents(collection)

    async def upload(
        self,
        files: Sequence[str] | None,
        collection: str | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio injects it by this default
    ) -> tuple[list[list[Any]], Any]:
        """Parse and index the files in one go; one result row per file (status, chunks, error)."""
        paths = [Path(f) for f in files or []]
        try:
            if not collection:
                raise InvalidRequest("choose or create a collection first")
            if not paths:
                raise InvalidRequest("add one or more files to index")
            services = self.services()
            pipeline = services.require_pipeline()
            most = services.settings.ingest.max_files_per_upload
            if len(paths) > most:
                raise InvalidRequest(f"at most {most} files per upload")
            # Gradio keeps the original file name as the last part of its temporary path.
            blobs = [
                FileBlob(path.name, await asyncio.to_thread(path.read_bytes)) for path in paths
            ]
            done: list[FileOutcome] = []

            def advance(outcome: FileOutcome) -> None:
                done.append(outcome)
                progress((len(done), len(blobs)), desc=f"Indexed {outcome.filename}", unit="files")

            progress((0, len(blobs)), desc=f"Indexing {len(blobs)} files", unit="files")
            outcomes = await index_files(pipeline, collection, blobs, progress=advance)
        except Exception as exc:
            report(exc, "upload")
            return [], gr.skip()
        rows = [_row(outcome) for outcome in outcomes]
        failed = sum(1 for r in rows if r[1] == "error")
        if failed:
            gr.Warning(f"{failed} of {len(rows)} files could not be indexed; see the table.")
        # Clear the file box only when everything went in, so failed files can be retried.
        return rows, (gr.skip() if failed else None)


def _row(outcome: FileOutcome) -> list[Any]:
    """A file's row in the upload results: name, status, chunks, message."""
    if outcome.error is not None:
        return [outcome.filename, "error", 0, outcome.error.message]
    return [outcome.filename, outcome.status, outcome.chunks, ""]


async def _close(deltas: AsyncIterator[Delta]) -> None:
    aclose = getattr(deltas, "aclose", None)
    if aclose is not None:
        await aclose()
