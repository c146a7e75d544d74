"""build_ui (the Gradio Blocks) and mount_ui (at /ui in the appliance's FastAPI app).

Gradio is imported inside the functions, so `import rag_appliance.ui` stays cheap and the
appliance runs without gradio installed.
"""

from __future__ import annotations

import hmac
import importlib.util
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rag_appliance.ingest.parsers import SUPPORTED_EXTENSIONS
from rag_appliance.services import Services
from rag_appliance.settings import Settings
from rag_appliance.ui.render import DOCUMENT_HEADERS, RESULT_HEADERS

if TYPE_CHECKING:
    import gradio as gr
    from fastapi import FastAPI

log = logging.getLogger(__name__)

UI_PATH = "/ui"
_NO_SOURCES = "*The sources of the latest answer appear here.*"
AUTH_MESSAGE = "Sign in with any user name and one of the server's API keys as the password."


def build_ui(
    services: Services | Callable[[], Services | None], settings: Settings | None = None
) -> gr.Blocks:
    """The UI over these services, or over a getter for services built at startup."""
    import gradio as gr

    from rag_appliance.ui.actions import Actions

    if isinstance(services, Services):
        settings = settings or services.settings
        given = services
        actions = Actions(lambda: given)
    else:
        actions = Actions(services)
    if settings is None:
        raise ValueError("build_ui needs settings when given a services getter")
    rag, generation = settings.rag, settings.generation
    # Analytics off: the appliance may run offline, and its usage is nobody else's business.
    with gr.Blocks(title="rag-appliance", analytics_enabled=False) as demo:
        gr.Markdown("## rag-appliance")
        with gr.Row(equal_height=True):
            collection = gr.Dropdown(
                label="Collection",
                choices=[],
                value=rag.default_collection,
                allow_custom_value=True,
                scale=3,
                elem_id="collection",
            )
            refresh = gr.Button("Refresh", scale=1, elem_id="refresh")
            new_name = gr.Textbox(
                label="New collection",
                placeholder="letters, digits, '_', '-', '.'",
                scale=3,
                elem_id="new-collection",
            )
            create = gr.Button("Create", scale=1, elem_id="create-collection")
        collection_status = gr.Markdown(elem_id="collection-status")

        with gr.Tab("Chat", elem_id="chat-tab"), gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Conversation", height=460, elem_id="chatbot")
                question = gr.Textbox(
                    label="Question",
                    placeholder="Ask about your documents (Enter sends)",
                    lines=1,
                    elem_id="question",
                )
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="send")
                    stop = gr.Button("Stop", elem_id="stop")
                    clear = gr.Button("Clear", elem_id="clear")
            with gr.Column(scale=2):
                plain = gr.Checkbox(label="Plain chat (no retrieval)", value=False, elem_id="plain")
                top_k = gr.Slider(1, 50, value=rag.top_k, step=1, label="Passages (top-k)")
                temperature = gr.Slider(
                    0.0, 2.0, value=generation.temperature, step=0.05, label="Temperature"
                )
                sources = gr.Markdown(_NO_SOURCES, elem_id="sources")

        with gr.Tab("Documents", elem_id="documents-tab"):
            with gr.Row():
                with gr.Column(scale=2):
                    files = gr.File(
                        label="Files to index (" + ", ".join(sorted(SUPPORTED_EXTENSIONS)) + ")",
                        file_count="multiple",
                        file_types=sorted(SUPPORTED_EXTENSIONS),
                        elem_id="files",
                    )
                    index = gr.Button("Index files", variant="primary", elem_id="index")
                with gr.Column(scale=3):
                    results = gr.Dataframe(
                        headers=RESULT_HEADERS,
                        datatype=["str", "str", "number", "str"],
                        interactive=False,
                        label="Upload results",
                        elem_id="upload-results",
                    )
            documents_status = gr.Markdown(elem_id="documents-status")
            documents = gr.Dataframe(
                headers=DOCUMENT_HEADERS,
                datatype=["str", "number", "str", "str"],
                interactive=False,
                label="Documents",
                elem_id="documents",
            )
            with gr.Row(equal_height=True):
                doc_pick = gr.Dropdown(
                    label="Document",
                    choices=[],
                    allow_custom_value=True,
                    scale=3,
                    elem_id="doc-pick",
                )
                delete = gr.Button("Delete document", variant="stop", scale=1, elem_id="delete")

        listing = [documents, doc_pick, documents_status]
        demo.load(actions.on_load, [collection], [collection, sources]).then(
            actions.documents, [collection], listing
        )
        refresh.click(actions.refresh_collections, [collection], [collection]).then(
            actions.documents, [collection], listing
        )
        collection.change(actions.documents, [collection], listing)
        create.click(
            actions.create_collection, [new_name], [collection, new_name, collection_status]
        )
        # Many chats at once: the engine batches them and answers 429 (a toast) when full.
        answering = gr.on(
            [question.submit, send.click],
            actions.chat,
            [question, chatbot, collection, plain, top_k, temperature],
            [chatbot, question, sources],
            concurrency_limit=None,
        )
        stop.click(None, cancels=[answering])
        clear.click(lambda: ([], _NO_SOURCES), None, [chatbot, sources], queue=False)
        # One upload at a time: indexing shares the embedding engine with search and chat.
        indexed = index.click(
            actions.upload, [files, collection], [results, files], concurrency_limit=1
        )
        indexed.then(actions.refresh_collections, [collection], [collection]).then(
            actions.documents, [collection], listing
        )
        delete.click(actions.delete_document, [collection, doc_pick], listing)
    return demo


def make_auth(api_keys: Sequence[str]) -> Callable[[str, str], bool] | None:
    """Gradio's login check: any user name, one of the API keys as the password (no keys: open)."""
    keys = [key.encode() for key in api_keys]
    if not keys:
        return None

    def check(_username: str, password: str) -> bool:
        given = password.encode()
        # Compare against every key so the time taken does not tell which one was close.
        matches = [hmac.compare_digest(given, key) for key in keys]
        return any(matches)

    return check


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

    gr.mount_gradio_app(
        app,
        build_ui(services, settings),
        path=path,
        auth=make_auth(settings.server.api_keys),
        auth_message=AUTH_MESSAGE,
        # Unexpected exceptions show a generic error, never their text (handlers catch them).
        show_error=False,
        max_file_size=settings.ingest.max_upload_bytes,
        # The appliance's API is /v1 (OpenAI-compatible); Gradio's own API page would confuse.
        footer_links=["gradio", "settings"],
        run_history=False,
        ssr_mode=False,
        mcp_server=False,
    )
    return True
