"""The document viewer: every chunk of a document in order, read like the listing reads them."""

from __future__ import annotations

import html
from types import SimpleNamespace

import gradio as gr
import pytest

from rag_appliance.errors import CollectionNotFound
from rag_appliance.ui.documents import VIEWER_TAB, DocumentActions, load_document
from tests.unit.ui.conftest import LONG, LONG_ID, Rig


async def test_every_chunk_in_order_and_the_text_once(rig: Rig) -> None:
    collections = rig.services.require_collections()
    view = await load_document(collections, "kb", LONG_ID)
    indexes = [c.index for c in view.chunks]
    assert len(indexes) > 2 and indexes == list(range(len(indexes)))
    # The chunks overlap; dropping what each shares with the previous one gives the document.
    text, end = "", 0
    for chunk in view.chunks:
        assert chunk.start is not None and chunk.end is not None
        text += chunk.text[max(0, end - chunk.start) :]
        end = chunk.end
    assert text == LONG
    assert not view.truncated


async def test_a_long_document_is_cut_and_says_so(rig: Rig) -> None:
    view = await load_document(rig.services.require_collections(), "kb", LONG_ID, most=2)
    assert [c.index for c in view.chunks] == [0, 1] and view.truncated


async def test_a_missing_document_is_a_404(rig: Rig) -> None:
    with pytest.raises(CollectionNotFound, match="document 'nope' is not in collection 'kb'"):
        await load_document(rig.services.require_collections(), "kb", "nope")


async def test_open_fills_the_viewer_and_switches_to_it(rig: Rig) -> None:
    viewer = DocumentActions(lambda: rig.services)
    page, tabs = await viewer.open("kb", "goats.txt", 0)
    assert "Goats graze on the windy island all summer long." in page
    assert 'class="chunk focus"' in page and "source goats" in page
    assert isinstance(tabs, gr.Tabs) and tabs.selected == VIEWER_TAB

    # A click on a source: the event data names the collection, document and chunk.
    event = SimpleNamespace(_data={"collection": "kb", "doc_id": LONG_ID, "chunk": 2})
    page, _ = await viewer.open_clicked(event)  # type: ignore[arg-type]
    assert page.count('class="chunk focus"') == 1 and 'data-chunk-index="2"' in page


async def test_a_failed_open_stays_on_the_current_tab(rig: Rig) -> None:
    viewer = DocumentActions(lambda: rig.services)
    with pytest.warns(UserWarning, match="is not in collection"):
        page, tabs = await viewer.open_picked("kb", "nope")
    assert "document 'nope' is not in collection 'kb'" in html.unescape(page)
    assert tabs == {"__type__": "update"}
