"""The clickable panels: every piece of user text escaped (gr.HTML does not sanitise), sources
numbered like their citations with the cited ones marked, and the document read once."""

from __future__ import annotations

from rag_appliance.retrieval.retriever import SearchHit
from rag_appliance.ui.render_html import (
    ChunkView,
    DocumentView,
    document_html,
    error_html,
    search_html,
    sources_html,
)

EVIL = '"><img src=x onerror=alert(1)>'


def test_sources_are_numbered_clickable_and_cited_ones_marked() -> None:
    sources = [
        {"index": 1, "doc_id": "a.txt", "chunk_index": 2, "score": 0.91234, "text": "x  *y*"},
        {"index": 2, "doc_id": "b", "source": "notes/b.md", "chunk_index": 0, "score": 0.5},
    ]
    panel = sources_html("kb", sources, cited=[2], footer="Answered: 3 tokens in 0.1 s.")
    assert panel.startswith("<p><b>Sources</b> · <code>kb</code></p><ol>")
    assert '<li class="source" data-collection="kb" data-doc="a.txt" data-chunk="2"' in panel
    assert "<b>a.txt</b> · chunk 2 · score 0.912<blockquote>x *y*</blockquote>" in panel
    assert '<li class="source cited" data-collection="kb" data-doc="b" data-chunk="0"' in panel
    assert "<b>b (notes/b.md)</b>" in panel and '<span class="badge">cited</span>' in panel
    assert panel.endswith('<p class="muted">Answered: 3 tokens in 0.1 s.</p>')


def test_the_panel_tells_the_truth_about_retrieval() -> None:
    assert "Plain chat: no documents were retrieved." in sources_html("kb", None)
    empty = sources_html("kb", [])
    assert "No passages were found" in empty and "not grounded" in empty
    note = "2 of the 5 passages found fitted in the model's context window"
    cut = sources_html("kb", [{"index": 1, "doc_id": "a"}], notice=note)
    assert f'<p class="notice">{note.replace(chr(39), "&#x27;")}</p>' in cut
    # With no passages the notice replaces the generic line (it says why).
    assert "No passages were found" not in sources_html("kb", [], notice="None fitted.")


def test_user_text_cannot_become_markup() -> None:
    sources = [{"index": 1, "doc_id": EVIL, "source": EVIL, "text": EVIL}]
    for page in (
        sources_html(EVIL, sources),
        search_html(EVIL, [SearchHit(EVIL, 0, EVIL, 1.0, {"k": EVIL}, EVIL)]),
        document_html(DocumentView(EVIL, EVIL, [ChunkView(0, EVIL)], EVIL, {"k": EVIL}, EVIL)),
        error_html(EVIL),
    ):
        assert "<img" not in page and 'data-doc="">' not in page
        assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page


def test_search_results_show_scores_and_metadata() -> None:
    hits = [SearchHit("a", 3, "t " * 300, 0.123456, {"lang": "en"}, None)]
    page = search_html("kb", hits, snippet=20)
    assert (
        "<b>a</b> · chunk 3 · score 0.1235" in page and "{&quot;lang&quot;: &quot;en&quot;}" in page
    )
    assert "…</blockquote>" in page
    assert "No results" in search_html("kb", [])


def test_the_document_reads_once_with_the_overlap_dimmed() -> None:
    text = "one two three four five six"
    chunks = [ChunkView(0, text[0:13], 0, 13), ChunkView(1, text[8:27], 8, 27)]
    page = document_html(DocumentView("kb", "d", chunks, truncated=True), focus=1)
    assert '<section class="chunk" data-chunk-index="0">' in page
    assert '<section class="chunk focus" data-chunk-index="1">' in page
    assert '<span class="overlap">three</span> four five six' in page
    assert "Only the first 2 chunks are shown." in page and "2 chunks" in page
