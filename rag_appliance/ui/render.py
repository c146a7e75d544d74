"""Markdown rendering for the UI (no gradio import: cheap and testable)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rag_appliance.collections.service import DocumentInfo
from rag_appliance.generation.base import Delta

# Characters that Markdown would read as formatting (or HTML) inside user text.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~])")
_SPACES = re.compile(r"\s+")

DOCUMENT_HEADERS = ["document", "chunks", "source", "indexed at"]
NOT_ALLOWED = "Not allowed"  # the label of a refusal (a 403) where errors say "Error"
# Said where a read-only key would otherwise be told to create or upload.
READ_ONLY = "This API key is read-only: it may search, chat and read; not upload or delete."
RESULT_HEADERS = ["file", "status", "chunks", "message"]


class Refusal(str):
    """A message saying what the signed-in key may not do (a 403): shown as such, not as an
    error, by `error_markdown` and `render_html.error_html`."""

    __slots__ = ()


@dataclass(frozen=True)
class ServedModels:
    """What the header says about the engines behind the page."""

    embedding: str
    dimension: int
    max_tokens: int
    chat: str | None  # None: the generator is disabled or not running
    context: int | None = None
    reranker: str | None = None


@dataclass(frozen=True)
class CollectionSize:
    """The selected collection as the line under the picker shows it (None: it is missing)."""

    name: str
    exists: bool
    documents: int = 0
    chunks: int = 0
    sparse: bool = False


def escape(text: str) -> str:
    """User text as literal Markdown on one line (uploaded files may contain anything)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", _SPACES.sub(" ", text).strip())


def code(text: str) -> str:
    """Text as an inline code span (backslash escapes do not work inside one)."""
    if "`" in text or "\n" in text:
        return escape(text)
    return f"`{text}`"


def message_text(content: Any) -> str:
    """The text of a chatbot message, whether a string or gradio's list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        return str(content.get("text") or "")
    if isinstance(content, Iterable):
        return "".join(message_text(part) for part in content)
    return ""


def models_markdown(models: ServedModels) -> str:
    """The header line naming the served models."""
    parts = [
        f"Embedding: {code(models.embedding)} ({models.dimension} dims, "
        f"up to {models.max_tokens} tokens)"
    ]
    if models.chat is None:
        parts.append("Chat: off")
    else:
        context = f" ({models.context}-token context)" if models.context else ""
        parts.append(f"Chat: {code(models.chat)}{context}")
    if models.reranker:
        parts.append(f"Reranker: {code(models.reranker)}")
    return " · ".join(parts)


def collection_markdown(
    size: CollectionSize | None, any_collections: bool, writer: bool = True
) -> str:
    """The line under the picker: the collection's size, or what to do first (`writer`: the
    signed-in key may create and upload; a read-only key is not told to)."""
    if size is None:
        if not any_collections and not writer:
            return f"**No collections** this API key may read yet. {READ_ONLY}"
        if not any_collections:
            return (
                "**Start here:** type a name under *New collection* and press *Create*, then "
                "upload documents in the *Documents* tab."
            )
        return "**Choose a collection** above" + (", or create a new one." if writer else ".")
    name = code(size.name)
    if not size.exists and not writer:
        return f"**{name} does not exist.** {READ_ONLY}"
    if not size.exists:
        return (
            f"**{name} does not exist yet:** press *Create* with that name, or upload "
            "documents in the *Documents* tab (the upload creates it)."
        )
    if size.documents == 0 and not writer:
        return f"**{name} is empty.** {READ_ONLY}"
    if size.documents == 0:
        return (
            f"**{name} is empty:** upload documents in the *Documents* tab, then ask about "
            "them in *Chat*."
        )
    search = "dense + BM25" if size.sparse else "dense only"
    access = "" if writer else " · read-only"
    return (
        f"{name}: {counted(size.documents, 'document')}, {counted(size.chunks, 'chunk')} · "
        f"{search}{access}"
    )


def counted(n: int, noun: str) -> str:
    """'1 chunk', '2 chunks'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def answer_footer(last: Delta | None, seconds: float, looped: bool = False) -> str:
    """The line under the sources once an answer is complete: length, time, how it ended."""
    tokens = last.completion_tokens if last is not None else 0
    reason = last.finish_reason if last is not None else None
    ending = " · cut at the length limit" if reason == "length" else ""
    if looped:
        ending = " · cut where it started repeating itself"
    return f"Answered: {tokens} tokens in {seconds:.1f} s{ending}."


def stopped_footer(last: Delta | None, seconds: float) -> str:
    """The line under the sources when Stop ended the answer."""
    if last is None:
        return f"Stopped after {seconds:.1f} s, before the first token."
    return f"Stopped after {last.completion_tokens} tokens in {seconds:.1f} s."


def error_markdown(message: str) -> str:
    """An error line for an inline status panel (a refusal reads as one, not as an error)."""
    label = NOT_ALLOWED if isinstance(message, Refusal) else "Error"
    return f"**{label}:** {escape(message)}"


def document_rows(documents: Sequence[DocumentInfo]) -> list[list[Any]]:
    """Rows of the documents table."""
    return [[d.id, d.chunks, d.source or "", d.indexed_at or ""] for d in documents]


def documents_summary(collection: str, total: int, shown: int, writer: bool = True) -> str:
    """The line above the documents table (a read-only key is told why it cannot change it)."""
    name = code(collection)
    noun = "document" if total == 1 else "documents"
    listed = f" (the first {shown} are listed)" if shown < total else ""
    access = "" if writer else f" {READ_ONLY}"
    return f"{name}: {total} {noun}{listed}.{access}"


def confirm_markdown(what: str, name: str, detail: str = "") -> str:
    """The question a delete asks before it happens."""
    extra = f" ({detail})" if detail else ""
    return f"**Delete {what} {code(name)}{extra}?** This cannot be undone."


HOW_TO = """\
1. **Collection**: pick one above, or type a name under *New collection* and press *Create*.
   The page remembers your choice in this browser.
2. **Documents**: upload txt, md, html, pdf or docx files and press *Index files*. Uploading a
   file with the same name again replaces it. Pick a document to *View* or *Delete* it.
3. **Chat**: ask about the collection. The answer streams in; the sources beside it are the
   passages the model was given, numbered like its `[n]` citations (cited ones are marked).
   Click a source to read its whole document. *Stop* ends the answer and keeps what was said.
   *Plain chat* skips retrieval; the sliders set passages, temperature and answer length.
4. **Search**: try a query without the model: dense (meaning), sparse (BM25 words) or hybrid,
   with a metadata filter such as `{"lang": "en", "year": {"gte": 2020}}`. These are the
   results `POST /v1/search` returns for the same request.
5. This browser keeps the conversation and the chosen collection across reloads (nothing is
   kept on the server); *Clear* forgets the conversation.
"""
