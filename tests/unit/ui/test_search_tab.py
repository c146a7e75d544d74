"""The Search tab asks what POST /v1/search asks and shows what it answers."""

from __future__ import annotations

import html
import json
import re

import pytest

from rag_appliance.api.search import search as search_route
from rag_appliance.errors import InvalidRequest
from rag_appliance.protocol.index import SearchRequest
from rag_appliance.ui.search_tab import SearchActions, search_request
from tests.unit.ui.conftest import Rig

QUERY = "goats on the island"


def shown_hits(results: str) -> list[tuple[str, str]]:
    """(doc id, score) of each result in the HTML."""
    found = re.findall(r'data-doc="([^"]*)".*?score (-?[0-9.]+)', results)
    return [(html.unescape(doc), score) for doc, score in found]


@pytest.mark.parametrize(
    ("mode", "flt", "group"),
    [
        ("default", "", False),
        ("dense", "", True),
        ("sparse", "", False),
        ("hybrid", "", False),
        ("default", '{"doc_id": ["llamas.txt", "long.md"]}', False),
    ],
)
async def test_the_tab_and_the_api_agree(rig: Rig, mode: str, flt: str, group: bool) -> None:
    results, summary = await SearchActions(lambda: rig.services).search(
        "kb", QUERY, mode, flt, group, 4
    )
    body: dict[str, object] = {"collection": "kb", "query": QUERY, "top_k": 4}
    if mode != "default":
        body["mode"] = mode
    if flt:
        body["filter"] = {"doc_id": ["llamas.txt", "long.md"]}
    if group:
        body["group_by_document"] = True
    # The route's own function over the same services (what an HTTP request runs).
    response = await search_route(SearchRequest.model_validate(body), rig.services)
    api = json.loads(bytes(response.body))
    assert shown_hits(results) == [(h["doc_id"], f"{h['score']:.4f}") for h in api["data"]]
    assert api["mode"] in summary and f"{len(api['data'])} hit" in summary
    if flt:
        assert {doc for doc, _ in shown_hits(results)} <= {"llamas.txt", "long.md"}


def test_the_request_is_checked_as_the_api_checks_it() -> None:
    request = search_request("kb", "q", "default", '{"lang": "en"}', True, 3)
    assert request.mode is None and request.filter == {"lang": "en"}
    assert request.group_by_document and request.top_k == 3
    with pytest.raises(InvalidRequest, match="the filter is not valid JSON"):
        search_request("kb", "q", None, "{nope", False, 3)
    with pytest.raises(InvalidRequest, match="Invalid 'filter': Input should be a valid dict"):
        search_request("kb", "q", None, "[1, 2]", False, 3)
    with pytest.raises(InvalidRequest, match="choose a collection"):
        search_request(None, "q", None, "", False, 3)


async def test_bad_filters_and_queries_read_like_the_api(rig: Rig) -> None:
    searcher = SearchActions(lambda: rig.services)
    with pytest.warns(UserWarning, match="a range is"):
        results, summary = await searcher.search("kb", QUERY, None, '{"n": {"gt": 1}}', False, 3)
    assert results == "" and summary.startswith("**Error:**")
    with pytest.warns(UserWarning, match="'query' must not be empty"):
        await searcher.search("kb", "  ", None, "", False, 3)
