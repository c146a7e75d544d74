"""Collections and documents in the UI: the opening selection, the size line and empty states,
and deletes that happen only after their confirmation."""

from __future__ import annotations

from typing import Any

import pytest

from rag_appliance.ui.actions import Actions, pick_collection
from tests.unit.ui.conftest import LONG_ID, Rig

UPDATE = "__type__"


def test_pick_collection_prefers_the_remembered_then_the_default() -> None:
    names = ["a", "b", "kb"]
    assert pick_collection("b", names, "kb") == "b"
    assert pick_collection("gone", names, "kb") == "kb"  # remembered but deleted: the default
    assert pick_collection(None, names, None) == "a"
    assert pick_collection(None, [], "kb") == "kb"  # configured: shown even before it exists
    assert pick_collection({"junk": 1}, [], None) is None


async def test_on_load_selects_and_names_the_models(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    actions = Actions(lambda: rig.services)
    picker, models, note = await actions.on_load("empty")
    assert picker["value"] == "empty" and picker["choices"] == ["empty", "kb"]
    assert "Embedding: `fake-model` (8 dims" in models and "Chat: `fake-chat`" in models
    assert note == ""
    picker, _, _ = await actions.on_load("gone")
    assert picker["value"] == "kb"
    assert "Collection 'gone' no longer exists; showing 'kb'." in capsys.readouterr().out


async def test_the_size_line_and_empty_states(rig: Rig) -> None:
    actions = Actions(lambda: rig.services)
    rows, picker, summary, line, remembered, *controls = await actions.listing("kb")
    assert len(rows) == 3
    assert sorted(picker["choices"]) == sorted(["goats.txt", "llamas.txt", LONG_ID])
    assert summary == "`kb`: 3 documents."
    assert line.startswith("`kb`: 3 documents, ") and "chunks · dense + BM25" in line
    assert remembered == "kb"
    assert all(c.get("visible", True) and c.get("interactive", True) for c in controls)

    line, remembered = (await actions.listing("empty"))[3:5]
    assert "is empty:** upload documents" in line and remembered == "empty"
    line, remembered = (await actions.listing("missing"))[3:5]
    assert "does not exist yet" in line and remembered == {UPDATE: "update"}  # not remembered
    line = (await actions.listing(None))[3]
    assert line.startswith("**Choose a collection**")


async def test_with_no_collections_the_page_says_where_to_start(rig: Rig) -> None:
    collections = rig.services.require_collections()
    for name in ("kb", "empty"):
        await collections.delete(name)
    line = (await Actions(lambda: rig.services).listing(None))[3]
    assert line.startswith("**Start here:**") and "*Create*" in line


async def test_a_document_is_deleted_only_once_confirmed(rig: Rig) -> None:
    actions = Actions(lambda: rig.services)
    row, question, pending = await actions.ask_delete_document("kb", "llamas.txt")
    assert row["visible"] is True
    assert question == "**Delete document `llamas.txt` (from kb)?** This cannot be undone."
    assert "llamas.txt" in (await actions.listing("kb"))[1]["choices"]  # nothing gone yet

    hide, cleared = await actions.delete_document(pending)
    assert hide["visible"] is False and cleared is None
    assert "llamas.txt" not in (await actions.listing("kb"))[1]["choices"]
    # The confirmation is spent: pressing it again deletes nothing.
    with pytest.warns(UserWarning, match="press Delete document first"):
        await actions.delete_document(cleared)


async def test_asking_about_a_missing_document_target_shows_no_question(rig: Rig) -> None:
    actions = Actions(lambda: rig.services)
    with pytest.warns(UserWarning, match="choose a collection and a document"):
        row, _, pending = await actions.ask_delete_document("kb", None)
    assert row["visible"] is False and pending is None


async def test_a_collection_is_deleted_only_once_confirmed(rig: Rig) -> None:
    actions = Actions(lambda: rig.services)
    row, question, pending = await actions.ask_delete_collection("empty")
    assert row["visible"] is True and "collection `empty` (0 documents, 0 chunks)" in question
    assert "empty" in await actions.collection_names()
    picker, hide, cleared = await actions.delete_collection(pending)
    assert picker["choices"] == ["kb"] and picker["value"] == "kb"  # the default
    assert hide["visible"] is False and cleared is None


async def test_create_selects_the_new_collection(rig: Rig) -> None:
    actions = Actions(lambda: rig.services)
    picker, name = await actions.create_collection(" fresh ")
    assert picker["value"] == "fresh" and "fresh" in picker["choices"] and name == ""
    with pytest.warns(UserWarning, match="type a name"):
        await actions.create_collection("  ")


async def test_a_whole_turn_without_a_page(rig: Rig) -> None:
    """Actions.chat: ask and answer in one (scripts and the integration tests use it)."""
    outputs: list[Any] = [
        o async for o in Actions(lambda: rig.services).chat("Goats?", [], "kb", False, 3, 0.0)
    ]
    history, box, panel = outputs[-1]
    assert [m["role"] for m in history] == ["user", "assistant"] and box == {UPDATE: "update"}
    assert "Answered:" in panel
