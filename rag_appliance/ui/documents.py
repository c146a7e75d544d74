"""The document viewer: every chunk of one document, in order, read from the store.

It reads the chunks the way the collection listing does (`store.scroll` over committed chunks,
through CollectionService's provenance check and commit-flag filter), here filtered by doc_id.
"""

from __future__ import annotations

import asyncio
from typing import Any

import gradio as gr

from rag_appliance.collections.service import CollectionService, doc_filter
from rag_appliance.errors import CollectionNotFound, InvalidRequest
from rag_appliance.ui.base import Handlers, report
from rag_appliance.ui.render_html import ChunkView, DocumentView, document_html, error_html

# Past this many chunks the viewer shows the first ones and says so (a page must stay usable).
MAX_CHUNKS = 2000
_PAGE = 256
VIEWER_TAB = "viewer"


async def load_document(
    collections: CollectionService, collection: str, doc_id: str, most: int = MAX_CHUNKS
) -> DocumentView:
    """Every committed chunk of the document sorted by chunk index; 404 when it has none."""
    await collections.check(collection)
    flt = collections.visible(doc_filter(doc_id).must)
    payloads: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page, cursor = await asyncio.to_thread(
            collections.store.scroll, collection, flt, _PAGE, cursor
        )
        payloads += [r.payload for r in page]
        # One more than shown, to know whether the document was cut.
        if cursor is None or not page or len(payloads) > most:
            break
    if not payloads:
        raise CollectionNotFound(
            f"document '{doc_id}' is not in collection '{collection}'",
            param="doc_id",
            code="document_not_found",
        )
    payloads.sort(key=lambda p: int(p.get("chunk_index", 0)))
    first = payloads[0]
    chunks = [
        ChunkView(
            int(p.get("chunk_index", 0)),
            str(p.get("text", "")),
            _int(p, "start_char"),
            _int(p, "end_char"),
        )
        for p in payloads[:most]
    ]
    return DocumentView(
        collection=collection,
        doc_id=doc_id,
        chunks=chunks,
        source=first.get("source"),
        metadata=first.get("metadata") or {},
        indexed_at=first.get("indexed_at"),
        truncated=len(payloads) > most or int(first.get("chunk_count", 0)) > most,
    )


def _int(payload: dict[str, Any], key: str) -> int | None:
    value = payload.get(key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class DocumentActions(Handlers):
    """Open a document in the viewer tab, from a source, a search result or the picker."""

    async def open(
        self,
        collection: str | None,
        doc_id: str | None,
        chunk: int | None = None,
        request: gr.Request | None = None,
    ) -> tuple[str, Any]:
        """The viewer's HTML and the tab switch to it (no switch when it failed)."""
        try:
            with self.acting(request):  # load_document checks the key may read it
                if not collection or not doc_id:
                    raise InvalidRequest("choose a collection and a document to view")
                collections = self.services().require_collections()
                view = await load_document(collections, collection, doc_id)
        except Exception as exc:
            return error_html(report(exc, "opening a document")), gr.skip()
        return document_html(view, focus=chunk), gr.Tabs(selected=VIEWER_TAB)

    async def open_clicked(
        self, evt: gr.EventData, request: gr.Request | None = None
    ) -> tuple[str, Any]:
        """A click on a source or a search result (its data-* attributes name the chunk)."""
        data = getattr(evt, "_data", None) or {}
        chunk = data.get("chunk")
        return await self.open(
            data.get("collection"),
            data.get("doc_id"),
            int(chunk) if isinstance(chunk, int | float) else None,
            request,
        )

    async def open_picked(
        self, collection: str | None, doc_id: str | None, request: gr.Request | None = None
    ) -> tuple[str, Any]:
        """The View button of the Documents tab."""
        return await self.open(collection, doc_id, request=request)
