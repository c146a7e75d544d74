"""The UI's handlers for collections and documents; they call the services directly.

The other handler classes: chat (`ui/chat.py`), search (`ui/search_tab.py`) and the document
viewer (`ui/documents.py`); all share `ui/base.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from rag_appliance.auth import Principal, acting_as, authorize_write
from rag_appliance.collections.service import DocumentInfo
from rag_appliance.errors import CollectionNotFound, InvalidRequest
from rag_appliance.ingest.files import FileOutcome, index_files
from rag_appliance.ingest.pipeline import IndexPipeline
from rag_appliance.services import Services
from rag_appliance.ui import uploads
from rag_appliance.ui.base import Handlers, ServicesGetter, hidden, report
from rag_appliance.ui.chat import ChatActions
from rag_appliance.ui.conversation import plain
from rag_appliance.ui.render import (
    CollectionSize,
    ServedModels,
    collection_markdown,
    confirm_markdown,
    counted,
    document_rows,
    documents_summary,
    error_markdown,
    models_markdown,
)
from rag_appliance.ui.render_html import error_html

# The listing's outputs: table rows, the document picker, the summary line, the line under
# the collection picker, and the remembered collection (skipped unless it exists); the page's
# listing adds the write controls' updates (`write_controls`).
Listing = tuple[list[list[Any]], Any, str, str, Any]

# The documents table lists at most this many; the summary line gives the full count.
MAX_LISTED = 1000
_PAGE = 200


class Actions(Handlers):
    """Collections (pick, remember, create, delete) and documents (list, upload, delete)."""

    def __init__(self, services: ServicesGetter) -> None:
        super().__init__(services)
        self.chatting = ChatActions(services)  # the page's chat: one Stop per session

    async def chat(
        self,
        message: str,
        history: Any,
        collection: str | None,
        plain_chat: bool,
        top_k: float,
        temperature: float,
        max_tokens: float | None = None,
        request: gr.Request | None = None,
    ) -> AsyncIterator[tuple[Any, Any, Any]]:
        """One whole turn without a page (question in, answer streamed): yields (chatbot,
        question box, sources panel), as the page's ask + answer do together."""
        question = (message or "").strip()
        asked = [*plain(history), {"role": "user", "content": question}] if question else []
        async for chatbot, box, sources, _ in self.chatting.answer(
            asked, collection, plain_chat, top_k, temperature, max_tokens, request
        ):
            yield chatbot, box, sources

    # -- collections -----------------------------------------------------------------------

    async def on_load(
        self, remembered: Any, request: gr.Request | None = None
    ) -> tuple[Any, str, str]:
        """Page load: the collection choices with one selected, the models line, a chat note.

        The selection is the one this browser remembers, else rag.default_collection, else the
        first collection; a remembered one that is gone falls back, with a toast saying so.
        Only collections the key may read are offered, remembered or configured ones included.
        """
        try:
            services = self.services()
            with self.acting(request) as principal:
                names = await self.collection_names()
        except Exception as exc:
            message = report(exc, "loading collections")
            return gr.update(), error_markdown(message), error_html(message)
        value = pick_collection(remembered, names, self._default(principal))
        # One outside the key's scopes (a shared browser) is passed over without a word.
        gone = isinstance(remembered, str) and remembered and principal.can_read(remembered)
        if gone and value != remembered:
            shown = f"'{value}'" if value else "none"
            gr.Info(f"Collection '{remembered}' no longer exists; showing {shown}.")
        note = ""
        if services.chat is None:  # generator disabled: say so before anyone asks
            note = error_html("chat is not available: the generator is disabled")
        return gr.update(choices=names, value=value), models_markdown(served(services)), note

    async def refresh_collections(
        self, current: str | None, request: gr.Request | None = None
    ) -> dict[str, Any]:
        """Reload the collection choices, keeping the current selection."""
        try:
            with self.acting(request):
                names = await self.collection_names()
        except Exception as exc:
            report(exc, "listing collections")
            return gr.update()
        return gr.update(choices=names, value=current)

    async def create_collection(
        self, name: str, request: gr.Request | None = None
    ) -> tuple[dict[str, Any], Any]:
        """Create an empty collection for the served model and select it."""
        name = (name or "").strip()
        try:
            with self.acting(request):
                if not name:
                    raise InvalidRequest("type a name for the new collection")
                await self.services().require_collections().ensure(name)
                names = await self.collection_names()
        except Exception as exc:
            report(exc, "creating a collection")
            return gr.update(), gr.update()
        gr.Info(f"Collection '{name}' is ready.")
        return gr.update(choices=names, value=name), ""

    async def ask_delete_collection(
        self, collection: str | None, request: gr.Request | None = None
    ) -> tuple[dict[str, Any], str, dict[str, Any] | None]:
        """First click on Delete collection: show what would go, and wait for the answer."""
        try:
            with self.acting(request):
                if not collection:
                    raise InvalidRequest("choose a collection to delete")
                authorize_write(collection)  # no question the key could not say yes to
                info, documents = await self.services().require_collections().get(collection)
        except Exception as exc:
            report(exc, "deleting a collection")
            return hidden(), "", None
        detail = f"{counted(documents, 'document')}, {counted(info.points_count, 'chunk')}"
        question = confirm_markdown("collection", collection, detail)
        return gr.update(visible=True), question, {"collection": collection}

    async def delete_collection(
        self, pending: dict[str, Any] | None, request: gr.Request | None = None
    ) -> tuple[dict[str, Any], dict[str, Any], None]:
        """Confirmed: drop the collection; select another (or none)."""
        name = str((pending or {}).get("collection") or "")
        try:
            with self.acting(request) as principal:
                if not name:
                    raise InvalidRequest("nothing to delete: press Delete collection first")
                await self.services().require_collections().delete(name)
                names = await self.collection_names()
        except Exception as exc:
            report(exc, "deleting a collection")
            return gr.update(), hidden(), None
        gr.Info(f"Deleted collection '{name}'.")
        value = pick_collection(None, names, self._default(principal))
        return gr.update(choices=names, value=value), hidden(), None

    # -- documents -------------------------------------------------------------------------

    async def listing(
        self, collection: str | None, request: gr.Request | None = None
    ) -> tuple[Any, ...]:
        """The documents table, the picker, its summary, the collection's size line, the
        collection to remember (only one that exists), then the write controls' updates."""
        try:
            principal = self.principal(request)
        except Exception as exc:
            message = report(exc, "listing collections")
            failed = error_markdown(message)
            return [], _picker([]), failed, failed, gr.skip(), *write_controls(None, collection)
        with acting_as(principal):
            shown = await self._listing(collection, may_write(principal))
        return (*shown, *write_controls(principal, collection))

    async def _listing(self, collection: str | None, writer: bool) -> Listing:
        """The listing's own outputs, as the acting key sees them."""
        skip = gr.skip()
        try:
            names = await self.collection_names()
        except Exception as exc:
            message = report(exc, "listing collections")
            return [], _picker([]), error_markdown(message), error_markdown(message), skip
        if not collection:
            line = collection_markdown(None, bool(names), writer)
            return [], _picker([]), "Choose or create a collection.", line, skip
        try:
            collections = self.services().require_collections()
            info, total = await collections.get(collection)
            listed: list[DocumentInfo] = []
            cursor: str | None = None
            while len(listed) < MAX_LISTED:
                page, cursor = await collections.documents(collection, _PAGE, cursor)
                listed += page
                if cursor is None or not page:
                    break
        except CollectionNotFound:
            missing = CollectionSize(collection, exists=False)
            line = collection_markdown(missing, bool(names), writer)
            return [], _picker([]), line, line, skip
        except Exception as exc:
            message = report(exc, "listing documents")
            return [], _picker([]), error_markdown(message), error_markdown(message), skip
        listed = listed[:MAX_LISTED]
        total = max(total, len(listed))
        size = CollectionSize(collection, True, total, info.points_count, info.bm25 is not None)
        summary = documents_summary(collection, total, len(listed), writer)
        rows = document_rows(listed)
        picker = _picker([d.id for d in listed])
        return rows, picker, summary, collection_markdown(size, True, writer), collection

    def pick_row(self, evt: gr.SelectData) -> dict[str, Any]:
        """A click on a row of the documents table picks that document."""
        row = evt.row_value if isinstance(evt.row_value, list) else None
        return gr.update(value=str(row[0])) if row else gr.update()

    async def ask_delete_document(
        self, collection: str | None, doc_id: str | None, request: gr.Request | None = None
    ) -> tuple[dict[str, Any], str, dict[str, Any] | None]:
        """First click on Delete document: name it and its chunks, and wait for the answer."""
        try:
            with self.acting(request):
                if not collection or not doc_id:
                    raise InvalidRequest("choose a collection and a document to delete")
                authorize_write(collection)  # no question the key could not say yes to
                await self.services().require_collections().check(collection)
        except Exception as exc:
            report(exc, "deleting a document")
            return hidden(), "", None
        question = confirm_markdown("document", doc_id, f"from {collection}")
        return gr.update(visible=True), question, {"collection": collection, "doc_id": doc_id}

    async def delete_document(
        self, pending: dict[str, Any] | None, request: gr.Request | None = None
    ) -> tuple[Any, None]:
        """Confirmed: delete exactly the document the question named (even if the picker has
        changed since); hides the question. The listing follows."""
        target = pending or {}
        collection, doc_id = str(target.get("collection") or ""), str(target.get("doc_id") or "")
        try:
            with self.acting(request):
                if not collection or not doc_id:
                    raise InvalidRequest("nothing to delete: press Delete document first")
                collections = self.services().require_collections()
                removed = await collections.delete_document(collection, doc_id)
        except Exception as exc:
            report(exc, "deleting a document")
            return hidden(), None
        gr.Info(f"Deleted '{doc_id}' ({removed} chunks).")
        return hidden(), None

    async def upload(
        self,
        files: Sequence[str] | None,
        collection: str | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio injects it by this default
        request: gr.Request | None = None,
    ) -> tuple[list[list[Any]], Any]:
        """Parse and index the files in one go; one result row per file (status, chunks, error).

        Once the files were read they are deleted from the upload folder (ui/uploads.py),
        indexed or not, and the file box is cleared; a refusal before that (no collection, no
        access) keeps them, so the press can be repeated.
        """
        paths = [Path(f) for f in files or []]
        read = False  # from the moment the files are read, they go whatever happens next
        try:
            with self.acting(request):
                if not collection:
                    raise InvalidRequest("choose or create a collection first")
                authorize_write(collection)  # before reading the files (index_files checks too)
                pipeline = self._upload_pipeline(paths)
                read = True
                outcomes = await self._index(pipeline, paths, collection, progress)
        except Exception as exc:
            report(exc, "upload")
            return [], (None if read else gr.skip())
        finally:
            if read:
                await asyncio.to_thread(uploads.discard, paths, uploads.current_dir())
        rows = [_row(outcome) for outcome in outcomes]
        failed = sum(1 for r in rows if r[1] == "error")
        if failed:
            gr.Warning(f"{failed} of {len(rows)} files could not be indexed; see the table.")
        return rows, None  # the files are gone: failed ones are added again from the table

    def _upload_pipeline(self, paths: Sequence[Path]) -> IndexPipeline:
        """The pipeline, once the upload passes the checks that need no file read."""
        if not paths:
            raise InvalidRequest("add one or more files to index")
        services = self.services()
        pipeline = services.require_pipeline()
        most = services.settings.ingest.max_files_per_upload
        if len(paths) > most:
            raise InvalidRequest(f"at most {most} files per upload")
        return pipeline

    async def _index(
        self, pipeline: IndexPipeline, paths: Sequence[Path], collection: str, progress: gr.Progress
    ) -> list[FileOutcome]:
        """Read and index the files, counting them off on the progress bar; a file over
        ingest.max_upload_bytes gets its own error row."""
        limit = pipeline.settings.max_upload_bytes
        outcomes, blobs = await asyncio.to_thread(uploads.read, paths, limit)
        done: list[FileOutcome] = list(outcomes.values())

        def advance(outcome: FileOutcome) -> None:
            done.append(outcome)
            progress((len(done), len(paths)), desc=f"Indexed {outcome.filename}", unit="files")

        progress((len(done), len(paths)), desc=f"Indexing {len(paths)} files", unit="files")
        if blobs:
            slots = list(blobs)
            indexed = await index_files(
                pipeline, collection, list(blobs.values()), progress=advance
            )
            outcomes.update(zip(slots, indexed, strict=True))
        return [outcomes[i] for i in range(len(paths))]

    def _default(self, principal: Principal) -> str | None:
        """rag.default_collection, unless it is outside the key's scopes (then unnamed)."""
        default = self.services().settings.rag.default_collection
        return default if default and principal.can_read(default) else None


def pick_collection(remembered: Any, names: Sequence[str], default: str | None) -> str | None:
    """The collection a page opens on: remembered (if it still exists), else the configured
    default (even before it exists: uploading creates it), else the first one."""
    if isinstance(remembered, str) and remembered in names:
        return remembered
    if default:
        return default
    return names[0] if names else None


def may_write(principal: Principal) -> bool:
    """Whether the key may change any collection at all (read-only keys may not)."""
    return principal.role != "read-only" and bool(principal.collections)


def write_controls(principal: Principal | None, collection: str | None) -> tuple[Any, ...]:
    """Updates for the controls that change collections (new name, Create, Delete collection,
    the upload column, Index files, Delete document): hidden for a key that may write nowhere,
    disabled on a collection it may not write to. The services refuse either way."""
    writer = principal is not None and may_write(principal)
    here = principal is not None and principal.can_write(collection) if collection else writer
    return (
        gr.update(visible=writer),
        gr.update(visible=writer),
        gr.update(visible=writer, interactive=here),
        gr.update(visible=writer),
        gr.update(interactive=here),
        gr.update(visible=writer, interactive=here),
    )


def served(services: Services) -> ServedModels:
    """The models behind the page, for the header."""
    embedding = services.embedding
    chat = services.chat
    return ServedModels(
        embedding=embedding.served_name,
        dimension=embedding.profile.dimension,
        max_tokens=embedding.profile.max_length,
        chat=chat.served_name if chat is not None else None,
        context=chat.generator.info.max_model_len if chat is not None else None,
        reranker=services.reranker.served_name if services.reranker is not None else None,
    )


def _picker(ids: list[str]) -> dict[str, Any]:
    return gr.update(choices=ids, value=None)


def _row(outcome: FileOutcome) -> list[Any]:
    """A file's row in the upload results: name, status, chunks, message."""
    if outcome.error is not None:
        return [outcome.filename, "error", 0, outcome.error.message]
    return [outcome.filename, outcome.status, outcome.chunks, ""]
