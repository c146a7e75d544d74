"""The UI's Markdown rendering: user text stays literal, lines say what happened and what next."""

from __future__ import annotations

from rag_appliance.collections.service import DocumentInfo
from rag_appliance.generation.base import Delta
from rag_appliance.ui.render import (
    READ_ONLY,
    CollectionSize,
    Refusal,
    ServedModels,
    answer_footer,
    code,
    collection_markdown,
    confirm_markdown,
    counted,
    document_rows,
    documents_summary,
    error_markdown,
    escape,
    message_text,
    models_markdown,
    stopped_footer,
)
from rag_appliance.ui.render_html import error_html


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


def test_models_line_names_every_served_model() -> None:
    full = ServedModels("bge-m3", 1024, 8192, "SmolLM2", 2048, "bge-reranker")
    assert models_markdown(full) == (
        "Embedding: `bge-m3` (1024 dims, up to 8192 tokens) · Chat: `SmolLM2` (2048-token "
        "context) · Reranker: `bge-reranker`"
    )
    assert models_markdown(ServedModels("m", 8, 32, None)).endswith("· Chat: off")


def test_the_collection_line_says_what_to_do_first() -> None:
    assert collection_markdown(None, False).startswith("**Start here:**")
    assert collection_markdown(None, True).startswith("**Choose a collection**")
    missing = collection_markdown(CollectionSize("kb", exists=False), True)
    assert missing.startswith("**`kb` does not exist yet:**") and "upload creates it" in missing
    empty = collection_markdown(CollectionSize("kb", True, 0, 0), True)
    assert empty.startswith("**`kb` is empty:** upload documents")
    one = collection_markdown(CollectionSize("kb", True, 1, 1, sparse=False), True)
    assert one == "`kb`: 1 document, 1 chunk · dense only"
    many = collection_markdown(CollectionSize("kb", True, 2, 7, sparse=True), True)
    assert many == "`kb`: 2 documents, 7 chunks · dense + BM25"
    assert counted(0, "chunk") == "0 chunks"


def test_a_read_only_key_is_not_told_to_create_or_upload() -> None:
    lines = [
        collection_markdown(None, False, writer=False),
        collection_markdown(None, True, writer=False),
        collection_markdown(CollectionSize("kb", exists=False), True, writer=False),
        collection_markdown(CollectionSize("kb", True, 0, 0), True, writer=False),
    ]
    assert not any("Create" in line or "upload documents" in line for line in lines)
    assert all(READ_ONLY in line for i, line in enumerate(lines) if i != 1)
    one = collection_markdown(CollectionSize("kb", True, 1, 1), True, writer=False)
    assert one == "`kb`: 1 document, 1 chunk · dense only · read-only"
    assert documents_summary("kb", 1, 1, writer=False) == f"`kb`: 1 document. {READ_ONLY}"


def test_a_refusal_reads_as_not_allowed_not_as_an_error() -> None:
    refused = Refusal("no access to collection 'b'")
    assert error_markdown(refused) == "**Not allowed:** no access to collection 'b'"
    assert error_html(refused) == (
        '<p class="notice"><b>Not allowed:</b> no access to collection &#x27;b&#x27;</p>'
    )
    assert error_html("boom").startswith('<p class="error"><b>Error:</b>')


def test_footers_tell_length_time_and_how_it_ended() -> None:
    assert answer_footer(Delta("", "stop", 12), 1.26) == "Answered: 12 tokens in 1.3 s."
    cut = answer_footer(Delta("", "length", 64), 3.0)
    assert cut == "Answered: 64 tokens in 3.0 s · cut at the length limit."
    loop = answer_footer(Delta("", "stop", 9), 1.0, looped=True)
    assert loop.endswith("cut where it started repeating itself.")
    assert answer_footer(None, 0.0) == "Answered: 0 tokens in 0.0 s."
    assert stopped_footer(None, 0.42) == "Stopped after 0.4 s, before the first token."
    assert stopped_footer(Delta("x", None, 5), 2.0) == "Stopped after 5 tokens in 2.0 s."


def test_error_and_confirmation_escape_names() -> None:
    assert error_markdown("collection 'x_y' does not exist") == (
        r"**Error:** collection 'x\_y' does not exist"
    )
    assert confirm_markdown("document", "a*b.txt", "from kb") == (
        "**Delete document `a*b.txt` (from kb)?** This cannot be undone."
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
