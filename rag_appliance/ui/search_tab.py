"""The Search tab's handler: the request /v1/search would get, through the same code path.

The inputs become a `SearchRequest` (the API's own model: the same checks and the same
`SearchOptions` defaults) and go to `Retriever.run` exactly as `api/search.py` sends them, so
the tab and the API can never disagree about a query's results.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal, get_args

import gradio as gr
from pydantic import ValidationError

from rag_appliance.errors import InvalidRequest
from rag_appliance.protocol.index import SearchRequest
from rag_appliance.retrieval.retriever import SearchResult
from rag_appliance.ui.base import Handlers, report
from rag_appliance.ui.render import code, error_markdown
from rag_appliance.ui.render_html import search_html

ModeChoice = Literal["default", "dense", "sparse", "hybrid"]
MODES: tuple[str, ...] = get_args(ModeChoice)


def search_request(
    collection: str | None,
    query: str,
    mode: str | None,
    filter_text: str | None,
    group_by_document: bool,
    top_k: float | None,
) -> SearchRequest:
    """The tab's inputs as the API's request body (400-style errors, as the API words them)."""
    if not collection:
        raise InvalidRequest("choose a collection to search", param="collection")
    raw: Any = None
    if filter_text and filter_text.strip():
        try:
            raw = json.loads(filter_text)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(
                f"the filter is not valid JSON: {exc.msg}", param="filter"
            ) from exc
    body: dict[str, Any] = {
        "collection": collection,
        "query": query or "",
        "filter": raw,
        "group_by_document": bool(group_by_document),
        "top_k": int(top_k) if top_k else None,
        "mode": None if mode in (None, "", "default") else mode,
    }
    try:
        return SearchRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        raise InvalidRequest(f"Invalid '{where}': {first.get('msg')}", param=where) from None


def result_summary(collection: str, result: SearchResult, seconds: float) -> str:
    """The line above the results: how they were found."""
    how = result.mode + (f" ({result.fusion} fusion)" if result.fusion else "")
    reranked = " · reranked" if result.reranked else ""
    n = len(result.hits)
    hits = "hit" if n == 1 else "hits"
    return f"{code(collection)} · {how}{reranked} · {n} {hits} in {seconds * 1000:.0f} ms"


class SearchActions(Handlers):
    """Searches the selected collection like POST /v1/search."""

    async def search(
        self,
        collection: str | None,
        query: str,
        mode: str | None,
        filter_text: str | None,
        group_by_document: bool,
        top_k: float | None,
        request: gr.Request | None = None,
    ) -> tuple[str, str]:
        """(results HTML, summary line) for the inputs, as the session's key."""
        started = time.perf_counter()
        try:
            body = search_request(collection, query, mode, filter_text, group_by_document, top_k)
            retriever = self.services().require_retriever()
            with self.acting(request):  # Retriever.run checks the key may read the collection
                # The same call as api/search.py.
                result = await retriever.run(
                    body.collection,
                    body.query,
                    body.top_k,
                    body.filter,
                    body.score_threshold,
                    options=body.options(),
                )
        except Exception as exc:
            return "", error_markdown(report(exc, "search"))
        seconds = time.perf_counter() - started
        return search_html(body.collection, result.hits), result_summary(
            body.collection, result, seconds
        )
