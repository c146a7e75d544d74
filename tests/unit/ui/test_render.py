"""The UI's Markdown rendering: user text stays literal, panels and tables say what happened."""

from __future__ import annotations

from rag_appliance.collections.service import DocumentInfo
from rag_appliance.generation.base import Delta
from rag_appliance.ui.render import (
    answer_footer,
    code,
    document_rows,
    documents_summary,
    error_markdown,
    escape,
    message_text,
    sources_markdown,
)


def test_escape_keeps_markdown_and_html_literal_on_one_line() -> None:
    assert escape("**bold** <script>x</script>\n\n# head") == (
        r"\*\*bold\*\* \<script\>x\</script\> \# head"
    )
    assert escape("  a   b  ") == "a b"


def test_code_span_unless_it_holds_a_backtick_or_newline() -> None:
    assert code("kb-1") == "`kb-1`"
    assert code("a`b") == r"a\`b"
    assert code("a\nb") == "a b"


def test_message_text_from_strings_parts_and_junk() -> None:
    assert message_text("hi") == "hi"
    assert message_text([{"type": "text", "text": "a"}, {"text": "b"}, "c"]) == "abc"
    assert message_text({"text": None}) == ""
    assert message_text(42) == ""


def test_sources_panel_numbers_passages_like_the_citations() -> None:
    sources = [
        {"index": 1, "doc_id": "a.txt", "chunk_index": 2, "score": 0.91234, "text": "x *y*"},
        {"index": 2, "doc_id": "b", "source": "notes/b.md", "chunk_index": 0, "score": 0.5},
    ]
    panel = sources_markdown("kb", sources).splitlines()
    assert panel[0] == "**Sources** · `kb`"
    assert panel[2] == r"1. **a\.txt** · chunk 2 · score 0.912"
    assert panel[3] == r"   > x \*y\*"
    assert panel[4] == r"2. **b (notes/b\.md)** · chunk 0 · score 0.500"


def test_sources_panel_for_plain_chat_and_no_hits() -> None:
    assert "Plain chat" in sources_markdown("kb", None)
    empty = sources_markdown("kb", [])
    assert "No passages were found" in empty and "not grounded" in empty


def test_answer_footer_tells_length_time_and_a_cut() -> None:
    assert answer_footer(Delta("", "stop", 12), 1.26) == "*Answered: 12 tokens in 1.3 s.*"
    cut = answer_footer(Delta("", "length", 64), 3.0)
    assert cut == "*Answered: 64 tokens in 3.0 s · cut at the length limit.*"
    assert answer_footer(None, 0.0) == "*Answered: 0 tokens in 0.0 s.*"


def test_error_markdown_escapes_the_message() -> None:
    assert error_markdown("collection 'x_y' does not exist") == (
        r"**Error:** collection 'x\_y' does not exist"
    )


def test_document_rows_and_summary() -> None:
    docs = [
        DocumentInfo("a.txt", 3, "a.txt", {}, "2026-01-01T00:00:00Z"),
        DocumentInfo("b", 1, None, {"k": 1}, None),
    ]
    assert document_rows(docs) == [
        ["a.txt", 3, "a.txt", "2026-01-01T00:00:00Z"],
        ["b", 1, "", ""],
    ]
    assert documents_summary("kb", 1, 1) == "`kb`: 1 document."
    assert documents_summary("kb", 2, 2) == "`kb`: 2 documents."
    assert (
        documents_summary("kb", 5000, 1000) == "`kb`: 5000 documents (the first 1000 are listed)."
    )
