"""Plain-text and Markdown rendering for the UI (no gradio import: cheap and testable)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rag_appliance.collections.service import DocumentInfo
from rag_appliance.generation.base import Delta

# Characters that Markdown would read as formatting (or HTML) inside user text.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~])")
_SPACES = re.compile(r"\s+")

DOCUMENT_HEADERS = ["document", "chunks", "source", "indexed at"]
RESULT_HEADERS = ["file", "status", "chunks", "message"]


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


def sources_markdown(collection: str, sources: Sequence[Mapping[str, Any]] | None) -> str:
    """The sources panel: one numbered entry per passage, matching the [n] citations."""
    if sources is None:
        return "*Plain chat: no documents were retrieved.*"
    if not sources:
        return (
            f"**Sources** · {code(collection)}\n\nNo passages were found in this collection; "
            "the answer is not grounded in your documents."
        )
    lines = [f"**Sources** · {code(collection)}", ""]
    for hit in sources:
        name = escape(str(hit.get("doc_id", "")))
        source = hit.get("source")
        if source and source != hit.get("doc_id"):
            name += f" ({escape(str(source))})"
        lines.append(
            f"{hit.get('index', len(lines) - 1)}. **{name}** · chunk {hit.get('chunk_index', 0)}"
            f" · score {float(hit.get('score', 0.0)):.3f}"
        )
        lines.append(f"   > {escape(str(hit.get('text', '')))}")
    return "\n".join(lines)


def answer_footer(last: Delta | None, seconds: float) -> str:
    """The line under the sources once an answer is complete: length, time, how it ended."""
    tokens = last.completion_tokens if last is not None else 0
    reason = last.finish_reason if last is not None else None
    ending = " · cut at the length limit" if reason == "length" else ""
    return f"*Answered: {tokens} tokens in {seconds:.1f} s{ending}.*"


def error_markdown(message: str) -> str:
    """An error line for an inline status panel."""
    return f"**Error:** {escape(message)}"


def document_rows(documents: Sequence[DocumentInfo]) -> list[list[Any]]:
    """Rows of the documents table."""
    return [[d.id, d.chunks, d.source or "", d.indexed_at or ""] for d in documents]


def documents_summary(collection: str, total: int, shown: int) -> str:
    """The line above the documents table."""
    name = code(collection)
    noun = "document" if total == 1 else "documents"
    if shown < total:
        return f"{name}: {total} {noun} (the first {shown} are listed)."
    return f"{name}: {total} {noun}."
