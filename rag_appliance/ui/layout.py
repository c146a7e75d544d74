"""The page's components, built section by section inside an open gr.Blocks (no events here).

Only called from build_ui, which imports gradio first; the elem_ids are what the browser test
and the page's CSS address.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from rag_appliance.ingest.parsers import SUPPORTED_EXTENSIONS
from rag_appliance.settings import Settings
from rag_appliance.ui.chat import NO_SOURCES
from rag_appliance.ui.render import DOCUMENT_HEADERS, HOW_TO, RESULT_HEADERS
from rag_appliance.ui.render_html import OPEN_ON_CLICK, SCROLL_TO_FOCUS, para, viewer_placeholder
from rag_appliance.ui.search_tab import MODES

# BrowserState encrypts with this; the key is sent to the page itself, so it hides nothing from
# the browser's user and only keeps the stored values opaque. A fixed one (not gradio's random
# per-process default) keeps what a browser remembers readable after a server restart.
_BROWSER_SECRET = "rag-appliance-ui-v1"
PANEL = "rag-panel"  # the class of the HTML panels, which the page CSS styles


def _panel(value: str, elem_id: str, js: str) -> gr.HTML:
    return gr.HTML(value, elem_id=elem_id, elem_classes=[PANEL], js_on_load=js, padding=True)


def _confirm(elem_id: str) -> tuple[gr.Row, gr.Markdown, gr.Button, gr.Button]:
    """A hidden 'Delete x? [Delete] [Cancel]' row."""
    with gr.Row(visible=False, equal_height=True, elem_id=elem_id) as row:
        text = gr.Markdown(elem_id=f"{elem_id}-text")
        yes = gr.Button("Delete", variant="stop", scale=0, elem_id=f"{elem_id}-yes")
        no = gr.Button("Cancel", scale=0, elem_id=f"{elem_id}-no")
    return row, text, yes, no


@dataclass
class Header:
    """The top of the page: models, help, the collection picker and its size line."""

    models: gr.Markdown
    collection: gr.Dropdown
    refresh: gr.Button
    new_name: gr.Textbox
    create: gr.Button
    delete: gr.Button
    confirm: gr.Row
    confirm_text: gr.Markdown
    confirm_yes: gr.Button
    confirm_no: gr.Button
    info: gr.Markdown
    saved_collection: gr.BrowserState
    saved_chat: gr.BrowserState
    pending_collection: gr.State
    pending_document: gr.State


def header(settings: Settings) -> Header:
    """The heading, the models line, "How to use" and the collection row."""
    gr.Markdown("## rag-appliance")
    models = gr.Markdown(elem_id="models")
    with gr.Accordion("How to use", open=False, elem_id="how-to"):
        gr.Markdown(HOW_TO)
    with gr.Row(equal_height=True):
        collection = gr.Dropdown(
            label="Collection",
            choices=[],
            # With keys the page load picks one the key may read: the default may not be.
            value=None if settings.server.api_keys else settings.rag.default_collection,
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
        delete = gr.Button(
            "Delete collection", variant="stop", scale=1, elem_id="delete-collection"
        )
    confirm, confirm_text, yes, no = _confirm("confirm-collection")
    info = gr.Markdown(elem_id="collection-info")
    return Header(
        models=models,
        collection=collection,
        refresh=refresh,
        new_name=new_name,
        create=create,
        delete=delete,
        confirm=confirm,
        confirm_text=confirm_text,
        confirm_yes=yes,
        confirm_no=no,
        info=info,
        saved_collection=gr.BrowserState(
            None, storage_key="rag-appliance.collection", secret=_BROWSER_SECRET
        ),
        saved_chat=gr.BrowserState(
            None, storage_key="rag-appliance.conversation", secret=_BROWSER_SECRET
        ),
        pending_collection=gr.State(None),
        pending_document=gr.State(None),
    )


@dataclass
class ChatTab:
    """The conversation, its controls and the sources panel."""

    chatbot: gr.Chatbot
    question: gr.Textbox
    send: gr.Button
    stop: gr.Button
    clear: gr.Button
    plain: gr.Checkbox
    top_k: gr.Slider
    temperature: gr.Slider
    max_tokens: gr.Slider
    sources: gr.HTML


def chat_tab(settings: Settings) -> ChatTab:
    """The Chat tab's contents."""
    rag, generation = settings.rag, settings.generation
    # Up to half the context (or the configured default when larger): the answer and the
    # prompt with its passages share the context window.
    window = generation.max_model_len
    longest = min(window - 1, max(generation.max_tokens, window // 2))
    with gr.Row():
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(
                label="Conversation",
                height=460,
                elem_id="chatbot",
                placeholder="Ask about the selected collection below; the answer cites its "
                "sources as [n].",
            )
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
            max_tokens = gr.Slider(
                1,
                longest,
                value=min(generation.max_tokens, longest),
                step=1,
                label="Answer length (max tokens)",
                elem_id="max-tokens",
            )
            sources = _panel(para(NO_SOURCES, "muted"), "sources", OPEN_ON_CLICK)
    return ChatTab(
        chatbot, question, send, stop, clear, plain, top_k, temperature, max_tokens, sources
    )


@dataclass
class SearchTab:
    """A query with its options, and the results."""

    query: gr.Textbox
    run: gr.Button
    mode: gr.Radio
    filter: gr.Textbox
    group: gr.Checkbox
    top_k: gr.Slider
    summary: gr.Markdown
    results: gr.HTML


def search_tab(settings: Settings) -> SearchTab:
    """The Search tab's contents."""
    search = settings.search
    with gr.Row(equal_height=True):
        query = gr.Textbox(
            label="Query", placeholder="Search text (Enter searches)", scale=5, elem_id="search-q"
        )
        run = gr.Button("Search", variant="primary", scale=1, elem_id="search-run")
    with gr.Row(equal_height=True):
        mode = gr.Radio(
            list(MODES),
            value="default",
            label="Mode (default: hybrid where the collection has BM25, else dense)",
            scale=3,
            elem_id="search-mode",
        )
        top_k = gr.Slider(
            1, search.max_top_k, value=search.default_top_k, step=1, label="top_k", scale=2
        )
        group = gr.Checkbox(label="One hit per document", scale=1, elem_id="search-group")
    flt = gr.Textbox(
        label="Filter (JSON, as in POST /v1/search)",
        placeholder='{"lang": "en", "tags": ["a", "b"], "year": {"gte": 2020}}',
        elem_id="search-filter",
    )
    summary = gr.Markdown(elem_id="search-summary")
    results = _panel("", "search-results", OPEN_ON_CLICK)
    return SearchTab(query, run, mode, flt, group, top_k, summary, results)


@dataclass
class DocumentsTab:
    """Upload, the documents table, and View / Delete for the picked document."""

    upload: gr.Column
    files: gr.File
    index: gr.Button
    results: gr.Dataframe
    status: gr.Markdown
    documents: gr.Dataframe
    pick: gr.Dropdown
    view: gr.Button
    delete: gr.Button
    confirm: gr.Row
    confirm_text: gr.Markdown
    confirm_yes: gr.Button
    confirm_no: gr.Button


def documents_tab() -> DocumentsTab:
    """The Documents tab's contents."""
    with gr.Row():
        with gr.Column(scale=2) as upload:
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
    status = gr.Markdown(elem_id="documents-status")
    documents = gr.Dataframe(
        headers=DOCUMENT_HEADERS,
        datatype=["str", "number", "str", "str"],
        interactive=False,
        label="Documents (click a row to pick it)",
        elem_id="documents",
    )
    with gr.Row(equal_height=True):
        pick = gr.Dropdown(
            label="Document", choices=[], allow_custom_value=True, scale=3, elem_id="doc-pick"
        )
        view = gr.Button("View", scale=1, elem_id="view")
        delete = gr.Button("Delete document", variant="stop", scale=1, elem_id="delete")
    confirm, text, yes, no = _confirm("confirm-document")
    return DocumentsTab(
        upload, files, index, results, status, documents, pick, view, delete, confirm, text, yes, no
    )


def viewer_tab() -> gr.HTML:
    """The document viewer (filled by a click on a source, a result or View)."""
    return _panel(viewer_placeholder(), "doc-viewer", SCROLL_TO_FOCUS)


def tab(label: str, tab_id: str) -> Any:
    """A tab with an id (the viewer is selected by id) and a predictable elem_id."""
    return gr.Tab(label, id=tab_id, elem_id=f"{tab_id}-tab")


CSS = f"""
.{PANEL} .muted {{ color: var(--body-text-color-subdued); }}
.{PANEL} .notice {{ border-left: 3px solid var(--color-accent); padding-left: 8px; }}
.{PANEL} .error {{ color: var(--error-text-color); }}
.{PANEL} ol {{ padding-left: 1.6em; margin: 0.4em 0; }}
.{PANEL} [data-doc] {{ cursor: pointer; border-radius: 6px; padding: 4px 6px; margin: 2px 0; }}
.{PANEL} [data-doc]:hover, .{PANEL} [data-doc]:focus {{
  background: var(--background-fill-secondary); }}
.{PANEL} .cited {{ background: var(--color-accent-soft); }}
.{PANEL} .badge {{ font-size: 0.8em; padding: 0 6px; border-radius: 8px; margin-left: 6px;
  background: var(--color-accent); color: white; }}
.{PANEL} blockquote {{ margin: 2px 0 2px 4px; padding-left: 8px;
  border-left: 3px solid var(--border-color-primary); }}
.{PANEL} .chunk {{ border-top: 1px dashed var(--border-color-primary); padding: 6px 0; }}
.{PANEL} .chunk.focus {{ background: var(--color-accent-soft); }}
.{PANEL} .chunk .text {{ white-space: pre-wrap; }}
.{PANEL} .overlap {{ color: var(--body-text-color-subdued); }}
.{PANEL} .thumbs {{ margin-left: 8px; }}
.{PANEL} .thumb {{ border: 1px solid var(--border-color-primary); border-radius: 6px;
  padding: 0 4px; margin-left: 2px; background: none; cursor: pointer; opacity: 0.6; }}
.{PANEL} .thumb.chosen {{ opacity: 1; background: var(--color-accent-soft); }}
"""
