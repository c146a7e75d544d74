"""HTML for the clickable panels: sources, search results and the document viewer.

gr.HTML puts its value into the page as is (no sanitising), so every piece of user text goes
through `html.escape` here, attribute values included; nothing else builds these strings.
"""

from __future__ import annotations

import html
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rag_appliance.retrieval.retriever import SearchHit
from rag_appliance.ui.render import NOT_ALLOWED, Refusal

# One click handler on the panel (its content is replaced on every update): an element with
# data-doc opens that document in the viewer; a thumb (data-label) sends feedback instead, as a
# `like` event, and stays pressed.
OPEN_ON_CLICK = """
const open = (event) => {
  const thumb = event.target.closest('[data-label]');
  if (thumb && element.contains(thumb)) {
    if (event.type !== 'click') return;  // Enter on a button clicks it: no viewer for that
    thumb.parentElement.querySelectorAll('[data-label]').forEach((b) => {
      b.classList.toggle('chosen', b === thumb);
      b.setAttribute('aria-pressed', String(b === thumb));
    });
    trigger('like', {
      event_id: thumb.dataset.event,
      chunk_id: thumb.dataset.chunkId,
      label: thumb.dataset.label,
    });
    return;
  }
  const item = event.target.closest('[data-doc]');
  if (!item || !element.contains(item)) return;
  if (event.type === 'keydown' && event.key !== 'Enter') return;
  trigger('click', {
    collection: item.dataset.collection,
    doc_id: item.dataset.doc,
    chunk: Number(item.dataset.chunk || 0),
  });
};
element.addEventListener('click', open);
element.addEventListener('keydown', open);
"""
# The viewer scrolls to the chunk it was opened at.
SCROLL_TO_FOCUS = """
watch('value', () => {
  const focus = element.querySelector('.chunk.focus');
  if (focus) focus.scrollIntoView({block: 'center'});
});
"""


@dataclass(frozen=True)
class ChunkView:
    """One stored chunk of a document, as the viewer shows it."""

    index: int
    text: str
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True)
class DocumentView:
    """A whole document: its listing fields and every chunk in order."""

    collection: str
    doc_id: str
    chunks: Sequence[ChunkView]
    source: str | None = None
    metadata: Mapping[str, Any] | None = None
    indexed_at: str | None = None
    truncated: bool = False  # more chunks than the viewer shows


def esc(value: Any) -> str:
    """Text (or an attribute value) as literal HTML."""
    return html.escape(str(value), quote=True)


def _opener(collection: str, doc_id: str, chunk: int, tag: str = "li", extra: str = "") -> str:
    classes = f' class="{extra}"' if extra else ""
    return (
        f'<{tag}{classes} data-collection="{esc(collection)}" data-doc="{esc(doc_id)}" '
        f'data-chunk="{int(chunk)}" role="button" tabindex="0" '
        'title="Open the whole document">'
    )


def para(text: str, cls: str = "") -> str:
    """A paragraph of plain text (escaped), optionally with a class."""
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{esc(text)}</p>"


def error_html(message: str) -> str:
    """An error line for an HTML panel (a refusal reads as one, not as an error)."""
    if isinstance(message, Refusal):
        return f'<p class="notice"><b>{NOT_ALLOWED}:</b> {esc(message)}</p>'
    return f'<p class="error"><b>Error:</b> {esc(message)}</p>'


def sources_html(
    collection: str,
    sources: Sequence[Mapping[str, Any]] | None,
    *,
    cited: Collection[int] = (),
    notice: str | None = None,
    footer: str | None = None,
    feedback_id: str | None = None,
) -> str:
    """The sources panel: one numbered, clickable entry per passage, as cited by [n];
    `feedback_id` (the answer's logged id) adds thumbs up and down to each."""
    tail = para(footer, "muted") if footer else ""
    if sources is None:
        return para("Plain chat: no documents were retrieved.", "muted") + tail
    head = f"<p><b>Sources</b> · <code>{esc(collection)}</code></p>"
    note = para(notice, "notice") if notice else ""
    if not sources:
        empty = para(
            "No passages were found in this collection; the answer is not grounded in your "
            "documents.",
            "notice",
        )
        return head + (note or empty) + tail
    items = []
    for n, hit in enumerate(sources, 1):
        index = int(hit.get("index", n))
        doc_id = str(hit.get("doc_id", ""))
        name = esc(doc_id)
        source = hit.get("source")
        if source and source != doc_id:
            name += f" ({esc(source)})"
        is_cited = index in cited
        badge = '<span class="badge">cited</span>' if is_cited else ""
        items.append(
            _opener(collection, doc_id, int(hit.get("chunk_index", 0)), extra=_cls(is_cited))
            + f"<b>{name}</b> · chunk {int(hit.get('chunk_index', 0))}"
            f" · score {float(hit.get('score', 0.0)):.3f}{badge}"
            f"{_thumbs(feedback_id, hit.get('chunk_id'))}"
            f"<blockquote>{esc(' '.join(str(hit.get('text', '')).split()))}</blockquote></li>"
        )
    body = "<ol>" + "".join(items) + "</ol>"
    return head + note + body + tail


def _thumbs(event_id: str | None, chunk_id: Any) -> str:
    """Thumbs up and down on one source (nothing without a logged answer to judge)."""
    if not event_id or not chunk_id:
        return ""
    buttons = [
        f'<button type="button" class="thumb" data-label="{label}" data-event="{esc(event_id)}" '
        f'data-chunk-id="{esc(chunk_id)}" aria-pressed="false" title="{title}" '
        f'aria-label="{title}">{face}</button>'
        for label, face, title in (
            ("positive", "\U0001f44d", "Relevant to the question"),
            ("negative", "\U0001f44e", "Not relevant to the question"),
        )
    ]
    return f'<span class="thumbs">{"".join(buttons)}</span>'


def _cls(cited: bool) -> str:
    return "source cited" if cited else "source"


def search_html(collection: str, hits: Sequence[SearchHit], snippet: int = 400) -> str:
    """Search results, best first, each clickable to open its document."""
    if not hits:
        return para("No results: nothing in this collection matched (check the filter).")
    items = []
    for hit in hits:
        text = " ".join(hit.text.split())
        short = text if len(text) <= snippet else text[:snippet] + "…"
        name = esc(hit.doc_id)
        if hit.source and hit.source != hit.doc_id:
            name += f" ({esc(hit.source)})"
        meta = f" · {esc(json.dumps(hit.metadata, ensure_ascii=False))}" if hit.metadata else ""
        items.append(
            _opener(collection, hit.doc_id, hit.chunk_index, extra="hit")
            + f"<b>{name}</b> · chunk {hit.chunk_index} · score {hit.score:.4f}"
            f'<span class="muted">{meta}</span><blockquote>{esc(short)}</blockquote></li>'
        )
    return "<ol>" + "".join(items) + "</ol>"


def viewer_placeholder() -> str:
    """The viewer before anything was opened."""
    return para(
        "Click a source beside an answer or a search result, or pick a document in the "
        "Documents tab and press View, to read the whole document here.",
        "muted",
    )


def document_html(view: DocumentView, focus: int | None = None) -> str:
    """The whole document, chunk by chunk in order; text shared with the previous chunk (the
    chunking overlap) is dimmed, so reading straight down gives the document once."""
    n = len(view.chunks)
    facts = [f"{n} chunk" if n == 1 else f"{n} chunks"]
    if view.source and view.source != view.doc_id:
        facts.append(f"source {esc(view.source)}")
    if view.indexed_at:
        facts.append(f"indexed {esc(view.indexed_at)}")
    parts = [
        f"<h3>{esc(view.doc_id)}</h3>",
        f'<p class="muted">in <code>{esc(view.collection)}</code> · {" · ".join(facts)}</p>',
    ]
    if view.metadata:
        meta = json.dumps(dict(view.metadata), ensure_ascii=False, sort_keys=True)
        parts.append(f'<p class="muted">metadata: <code>{esc(meta)}</code></p>')
    if view.truncated:
        parts.append(para(f"Only the first {len(view.chunks)} chunks are shown.", "notice"))
    previous_end: int | None = None
    for chunk in view.chunks:
        shared = 0
        if chunk.start is not None and previous_end is not None and chunk.start < previous_end:
            shared = min(len(chunk.text), previous_end - chunk.start)
        if chunk.end is not None:
            previous_end = chunk.end
        where = f" · characters {chunk.start} to {chunk.end}" if chunk.start is not None else ""
        cls = "chunk focus" if chunk.index == focus else "chunk"
        overlap = f'<span class="overlap">{esc(chunk.text[:shared])}</span>' if shared else ""
        parts.append(
            f'<section class="{cls}" data-chunk-index="{chunk.index}">'
            f'<div class="muted">chunk {chunk.index}{where}</div>'
            f'<div class="text">{overlap}{esc(chunk.text[shared:])}</div></section>'
        )
    return "".join(parts)
