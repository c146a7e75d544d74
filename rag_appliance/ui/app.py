"""build_ui (the Gradio Blocks and its events) and mount_ui (at /ui in the FastAPI app).

Gradio is imported inside the functions, so `import rag_appliance.ui` stays cheap and the
appliance runs without gradio installed. The components are built in `ui/layout.py`; the
handlers live in `ui/actions.py` (collections, documents), `ui/chat.py`, `ui/search_tab.py`
and `ui/documents.py` (the viewer).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rag_appliance.services import Services
from rag_appliance.settings import Settings

if TYPE_CHECKING:
    import gradio as gr
    from fastapi import FastAPI

log = logging.getLogger(__name__)

UI_PATH = "/ui"
AUTH_MESSAGE = (
    "Sign in with an API key as the password, and the key's name as the user name "
    "(a key without a name: any user name)."
)


def build_ui(
    services: Services | Callable[[], Services | None], settings: Settings | None = None
) -> gr.Blocks:
    """The UI over these services, or over a getter for services built at startup."""
    import gradio as gr

    from rag_appliance.ui import layout
    from rag_appliance.ui.actions import Actions
    from rag_appliance.ui.base import hidden
    from rag_appliance.ui.documents import VIEWER_TAB, DocumentActions
    from rag_appliance.ui.jobs import JobsActions, jobs_tab
    from rag_appliance.ui.search_tab import SearchActions

    if isinstance(services, Services):
        settings = settings or services.settings
        given = services
        getter: Callable[[], Services | None] = lambda: given  # noqa: E731
    else:
        getter = services
    if settings is None:
        raise ValueError("build_ui needs settings when given a services getter")
    actions = Actions(getter)
    chat = actions.chatting
    viewer_actions = DocumentActions(getter)
    searcher = SearchActions(getter)
    jobs = JobsActions(getter, actions.upload)  # large uploads go in the background as jobs

    def cancel() -> tuple[dict[str, Any], None]:
        return hidden(), None

    from rag_appliance.ui.uploads import ABANDONED_AGE_S, SWEEP_EVERY_S

    # Analytics off: the appliance may run offline, and its usage is nobody else's business.
    # delete_cache: uploads nobody indexed go after an hour, and all of them at shutdown.
    with gr.Blocks(
        title="rag-appliance",
        analytics_enabled=False,
        delete_cache=(SWEEP_EVERY_S, ABANDONED_AGE_S),
    ) as demo:
        top = layout.header(settings)
        with gr.Tabs(elem_id="tabs") as tabs:
            with layout.tab("Chat", "chat"):
                talk = layout.chat_tab(settings)
            with layout.tab("Search", "search"):
                find = layout.search_tab(settings)
            with layout.tab("Documents", "documents"):
                docs = layout.documents_tab()
            with layout.tab("Document viewer", VIEWER_TAB):
                viewer = layout.viewer_tab()
            with layout.tab("Jobs", "jobs"):
                running = jobs_tab()

        collection = top.collection
        # Shown or hidden, enabled or not, by what the signed-in key may write (write_controls).
        writes = [top.new_name, top.create, top.delete, docs.upload, docs.index, docs.delete]
        listing = [docs.documents, docs.pick, docs.status, top.info, top.saved_collection, *writes]
        opened = [viewer, tabs]

        # -- collections: load (remembered or default), refresh, create, delete ---------------
        demo.load(
            actions.on_load, [top.saved_collection], [collection, top.models, talk.sources]
        ).then(actions.listing, [collection], listing)
        demo.load(chat.restore, [top.saved_chat], [talk.chatbot])
        collection.change(actions.listing, [collection], listing)
        top.refresh.click(actions.refresh_collections, [collection], [collection]).then(
            actions.listing, [collection], listing
        )
        top.create.click(
            actions.create_collection, [top.new_name], [collection, top.new_name]
        ).then(actions.listing, [collection], listing)
        top.delete.click(
            actions.ask_delete_collection,
            [collection],
            [top.confirm, top.confirm_text, top.pending_collection],
        )
        top.confirm_yes.click(
            actions.delete_collection,
            [top.pending_collection],
            [collection, top.confirm, top.pending_collection],
        ).then(actions.listing, [collection], listing)
        top.confirm_no.click(cancel, None, [top.confirm, top.pending_collection], queue=False)

        # -- chat: the question shows at once, the answer streams; Stop keeps both ------------
        asked = gr.on(
            [talk.question.submit, talk.send.click],
            chat.ask,
            [talk.question, talk.chatbot],
            [talk.chatbot, talk.question],
            queue=False,
        )
        # Many chats at once: the engine batches them and answers 429 (a toast) when full.
        asked.then(
            chat.answer,
            [talk.chatbot, collection, talk.plain, talk.top_k, talk.temperature, talk.max_tokens],
            [talk.chatbot, talk.question, talk.sources, top.saved_chat],
            concurrency_limit=None,
            api_name="chat",
        )
        talk.stop.click(chat.stop, None, None, queue=False)
        talk.clear.click(
            chat.clear, None, [talk.chatbot, talk.sources, top.saved_chat], queue=False
        )
        talk.sources.click(viewer_actions.open_clicked, None, opened)
        talk.sources.like(chat.feedback, None, None)  # a thumb on a source (search_log)

        # -- search: the /v1/search request, through the same retriever call ------------------
        gr.on(
            [find.query.submit, find.run.click],
            searcher.search,
            [collection, find.query, find.mode, find.filter, find.group, find.top_k],
            [find.results, find.summary],
            api_name="search",
        )
        find.results.click(viewer_actions.open_clicked, None, opened)

        # -- documents: upload, pick, view, delete (after a confirmation) ---------------------
        # One upload at a time: indexing shares the embedding engine with search and chat.
        indexed = docs.index.click(
            jobs.upload,
            [docs.files, collection],
            [docs.results, docs.files],
            concurrency_limit=1,
        )
        indexed.then(actions.refresh_collections, [collection], [collection]).then(
            actions.listing, [collection], listing
        )
        docs.documents.select(actions.pick_row, None, [docs.pick])
        docs.view.click(viewer_actions.open_picked, [collection, docs.pick], opened)
        docs.delete.click(
            actions.ask_delete_document,
            [collection, docs.pick],
            [docs.confirm, docs.confirm_text, top.pending_document],
        )
        docs.confirm_yes.click(
            actions.delete_document, [top.pending_document], [docs.confirm, top.pending_document]
        ).then(actions.listing, [collection], listing)
        docs.confirm_no.click(cancel, None, [docs.confirm, top.pending_document], queue=False)

        # -- jobs: the table refreshed on a timer, Cancel for the picked job ------------------
        jobs_view = [running.table, running.pick]
        demo.load(jobs.jobs_listing, None, jobs_view)
        running.timer.tick(jobs.jobs_listing, None, jobs_view, show_progress="hidden")
        running.cancel.click(jobs.cancel_job, [running.pick], [running.status]).then(
            jobs.jobs_listing, None, jobs_view
        )
    return demo


def mount_ui(
    app: FastAPI,
    settings: Settings,
    services: Callable[[], Services | None],
    path: str = UI_PATH,
) -> bool:
    """Mount the UI at `path`; False (and a log line) when gradio is not installed."""
    if importlib.util.find_spec("gradio") is None:
        log.info("web UI disabled: gradio is not installed")
        return False
    import gradio as gr

    from rag_appliance.auth import ui_auth
    from rag_appliance.ui.layout import CSS
    from rag_appliance.ui.uploads import prepare

    # Before the UI is built: Gradio reads its upload folder when it builds the app.
    prepare(settings.data_dir)
    gr.mount_gradio_app(
        app,
        build_ui(services, settings),
        path=path,
        # An API key as the password, a named key's name as the user name; None: open.
        auth=ui_auth(settings),
        auth_message=AUTH_MESSAGE,
        # Unexpected exceptions show a generic error, never their text (handlers catch them).
        show_error=False,
        max_file_size=settings.ingest.max_upload_bytes,
        # The appliance's API is /v1 (OpenAI-compatible); Gradio's own API page would confuse.
        footer_links=["gradio", "settings"],
        run_history=False,
        ssr_mode=False,
        mcp_server=False,
        css=CSS,
    )
    return True
