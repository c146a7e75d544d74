"""Scoped keys in the UI: each handler acts as the signed-in key, so a team-a key cannot see,
search, chat over, open, upload to or delete in team-b, and a read-only key changes nothing."""

from __future__ import annotations

import asyncio
import html
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import gradio as gr
import pytest
from fastapi.testclient import TestClient

from rag_appliance.app import create_app
from rag_appliance.auth import current_principal
from rag_appliance.ingest.pipeline import Document
from rag_appliance.services import Services
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from rag_appliance.ui.actions import Actions, write_controls
from rag_appliance.ui.chat import ChatActions
from rag_appliance.ui.documents import DocumentActions
from rag_appliance.ui.render import escape
from rag_appliance.ui.search_tab import SearchActions
from tests.conftest import make_services, make_settings
from tests.fakes import FakeEncoder, FakeGenerator
from tests.unit.auth.conftest import KEYS
from tests.unit.ui.conftest import Request

TEAM_A = "team-a-docs"
TEAM_B = "team-b"  # also rag.default_collection: a team-a key must not be shown it
SECRET = "The team-b vault phrase is cobalt-otter."
DENIED = f"This API key has no access to collection '{TEAM_B}' (it may use: team-a-*)."
READ_ONLY = f"This API key is read-only: it may not change collection '{TEAM_A}'"
# What the handlers read from gr.Request: the session's user name.
READER = cast(gr.Request, Request(username="reader"))  # read-only, team-a-*
ALICE = cast(gr.Request, Request(username="alice"))  # read-write, team-a-*
STRANGER = cast(gr.Request, Request(username="stranger"))  # no key's name: no access at all


@pytest.fixture
async def services(tmp_path: Path, tokenizer: Any) -> AsyncIterator[Services]:
    settings = make_settings(
        server={"api_keys": KEYS},
        generation={"max_tokens": 32},
        rag={"top_k": 3, "default_collection": TEAM_B},
    )
    generator = FakeGenerator(reply="Goats graze [1].", max_model_len=1024)
    store = QdrantEdgeStore(tmp_path / "db")
    services = make_services(settings, FakeEncoder(), store, generator, tokenizer=tokenizer)
    await services.start()
    pipeline = services.require_pipeline()  # seeded as the CLI would: no principal
    await pipeline.index(TEAM_A, [Document("Goats graze on the island.", id="goats.txt")])
    await pipeline.index(TEAM_B, [Document(SECRET, id="vault.txt")])
    yield services
    await services.stop()


def text(*outputs: Any) -> str:
    """Everything the outputs would show, unescaped."""
    return html.unescape(repr(outputs))


async def test_the_picker_lists_only_readable_collections(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    actions = Actions(lambda: services)
    # The default (team-b) and a remembered team-b (a shared browser) are passed over quietly.
    for remembered in (None, TEAM_B):
        picker, _, _ = await actions.on_load(remembered, READER)
        assert picker["choices"] == [TEAM_A] and picker["value"] == TEAM_A
    assert TEAM_B not in capsys.readouterr().out  # no "no longer exists" toast naming it
    refreshed = await actions.refresh_collections(TEAM_A, READER)
    assert refreshed["choices"] == [TEAM_A]
    # A session no key signed in (or no request at all) gets nothing, not even the names.
    for request in (STRANGER, None):
        with pytest.warns(UserWarning, match="sign in again"):
            picker, _, _ = await actions.on_load(None, request)
        assert "choices" not in picker
        with pytest.warns(UserWarning, match="sign in again"):
            assert "choices" not in await actions.refresh_collections(None, request)


async def test_listing_team_b_says_no_access_and_shows_nothing(services: Services) -> None:
    actions = Actions(lambda: services)
    with pytest.warns(UserWarning, match="no access"):
        rows, picker, summary, line, remembered, *_ = await actions.listing(TEAM_B, READER)
    assert rows == [] and picker["choices"] == [] and line == f"**Not allowed:** {escape(DENIED)}"
    assert remembered == {"__type__": "update"}  # not remembered
    assert "vault" not in text(rows, summary, line) and "1 document" not in line


async def test_a_read_only_key_sees_no_write_controls(services: Services) -> None:
    actions = Actions(lambda: services)
    rows, _, summary, line, _, *controls = await actions.listing(TEAM_A, READER)
    assert [r[0] for r in rows] == ["goats.txt"]
    assert "read-only" in summary and line.endswith("· read-only")
    new_name, create, delete, upload, index, delete_doc = controls
    assert not any(c["visible"] for c in (new_name, create, delete, upload, delete_doc))
    assert index["interactive"] is False
    # A read-write team-a key: everything on team-a, disabled on a name outside its scopes.
    *_, delete, _, index, delete_doc = await actions.listing(TEAM_A, ALICE)
    assert delete["visible"] and delete["interactive"] and index["interactive"]
    with pytest.warns(UserWarning, match="no access"):
        *_, delete, _, index, delete_doc = await actions.listing(TEAM_B, ALICE)
    assert delete["visible"] and not delete["interactive"] and not index["interactive"]


async def test_search_over_team_b_is_refused(services: Services) -> None:
    searcher = SearchActions(lambda: services)
    with pytest.warns(UserWarning, match="no access"):
        results, summary = await searcher.search(TEAM_B, "vault", "default", "", False, 3, READER)
    # The 403's own words, as what the key may not do rather than as an error.
    assert results == "" and summary == f"**Not allowed:** {escape(DENIED)}"
    results, summary = await searcher.search(TEAM_A, "goats", "default", "", False, 3, READER)
    assert "goats.txt" in results and "1 hit" in summary


async def collect(outputs: AsyncIterator[Any]) -> list[Any]:
    return [o async for o in outputs]


async def stepped(outputs: AsyncIterator[Any]) -> list[Any]:
    """Each step in a task of its own with no principal set, as Gradio may run them."""
    steps: list[Any] = []
    while True:
        try:
            steps.append(await asyncio.create_task(_next(outputs)))
        except StopAsyncIteration:
            return steps


async def _next(outputs: AsyncIterator[Any]) -> Any:
    assert current_principal() is None
    return await outputs.__anext__()


async def test_chat_over_team_b_is_refused(services: Services) -> None:
    chat = ChatActions(lambda: services)
    asked = [{"role": "user", "content": "What is the vault phrase?"}]
    with pytest.warns(UserWarning, match="no access"):
        outputs = await stepped(chat.answer(asked, TEAM_B, False, 3, 0.0, 32, READER))
    history, box, panel, _ = outputs[-1]
    assert history == [] and box == asked[0]["content"]  # the question goes back to the box
    assert DENIED in html.unescape(panel) and SECRET not in text(outputs)
    # Over team-a, each step in its own task: retrieval and the stream act as the key.
    outputs = await stepped(chat.answer(asked, TEAM_A, False, 3, 0.0, 32, READER))
    history, _, panel, _ = outputs[-1]
    assert history[-1]["content"] == "Goats graze [1]." and "goats.txt" in panel
    with pytest.warns(UserWarning, match="sign in again"):
        outputs = await collect(chat.answer(asked, TEAM_A, True, 3, 0.0, 32, STRANGER))
    assert outputs[-1][0] == [] and "sign in again" in outputs[-1][2]  # not even plain chat
    # Actions.chat (a whole turn without a page) acts as its request too.
    turn = Actions(lambda: services).chat("Vault?", [], TEAM_B, False, 3, 0.0, 32, READER)
    with pytest.warns(UserWarning, match="no access"):
        assert DENIED in html.unescape((await collect(turn))[-1][2])


async def test_the_viewer_refuses_team_b(services: Services) -> None:
    viewer = DocumentActions(lambda: services)
    with pytest.warns(UserWarning, match="no access"):
        page, tabs = await viewer.open_picked(TEAM_B, "vault.txt", READER)
    assert DENIED in html.unescape(page) and SECRET not in page and tabs == {"__type__": "update"}
    event = SimpleNamespace(_data={"collection": TEAM_B, "doc_id": "vault.txt", "chunk": 0})
    with pytest.warns(UserWarning, match="no access"):
        page, _ = await viewer.open_clicked(cast(gr.EventData, event), READER)
    assert SECRET not in page
    page, _ = await viewer.open_picked(TEAM_A, "goats.txt", READER)
    assert "Goats graze on the island." in page


async def test_uploads_need_a_read_write_key_in_scope(services: Services, tmp_path: Path) -> None:
    actions = Actions(lambda: services)
    note = tmp_path / "notes.txt"
    note.write_text("Llamas hum softly.")
    files = [str(note)]
    for collection, match in ((TEAM_B, "no access"), (TEAM_A, "read-only")):
        with pytest.warns(UserWarning, match=match):
            rows, _ = await actions.upload(files, collection, request=READER)
        assert rows == []
    with pytest.warns(UserWarning, match="no access"):
        await actions.upload(files, TEAM_B, request=ALICE)
    rows, _ = await actions.upload(files, TEAM_A, request=ALICE)
    assert rows == [["notes.txt", "indexed", 1, ""]]
    documents, _ = await services.require_collections().documents(TEAM_B, 10)
    assert [d.id for d in documents] == ["vault.txt"]  # nothing reached team-b


async def test_creating_needs_a_read_write_key_in_scope(services: Services) -> None:
    actions = Actions(lambda: services)
    with pytest.warns(UserWarning, match="read-only"):
        await actions.create_collection("team-a-new", READER)
    with pytest.warns(UserWarning, match="no access"):
        await actions.create_collection("team-b-new", ALICE)
    picker, _ = await actions.create_collection("team-a-new", ALICE)
    assert picker["choices"] == [TEAM_A, "team-a-new"] and picker["value"] == "team-a-new"


async def test_deletes_need_a_read_write_key_in_scope(services: Services) -> None:
    actions = Actions(lambda: services)
    collections = services.require_collections()
    for collection, match, key in (
        (TEAM_B, "no access", READER),
        (TEAM_A, READ_ONLY, READER),
        (TEAM_B, "no access", ALICE),
    ):
        doc = "vault.txt" if collection == TEAM_B else "goats.txt"
        pending = {"collection": collection, "doc_id": doc}
        with pytest.warns(UserWarning, match=match):  # no question it could not say yes to
            row, question, held = await actions.ask_delete_document(collection, doc, key)
        assert row["visible"] is False and question == "" and held is None
        with pytest.warns(UserWarning, match=match):
            row, question, held = await actions.ask_delete_collection(collection, key)
        assert row["visible"] is False and "vault" not in question and held is None
        with pytest.warns(UserWarning, match=match):  # a forged confirmation: refused too
            await actions.delete_document(pending, key)
        with pytest.warns(UserWarning, match=match):
            await actions.delete_collection({"collection": collection}, key)
    assert (await collections.get(TEAM_A))[1] == 1 and (await collections.get(TEAM_B))[1] == 1

    _, _, confirmed = await actions.ask_delete_collection(TEAM_A, ALICE)
    picker, _, _ = await actions.delete_collection(confirmed, ALICE)
    # Its own last collection gone: the page selects none, not the (unreadable) default.
    assert picker["choices"] == [] and picker["value"] is None
    assert [info.name for info, _ in await collections.all()] == [TEAM_B]


def test_the_ui_is_mounted_for_scoped_keys() -> None:
    settings = make_settings(server={"api_keys": KEYS})
    with TestClient(create_app(settings, make_services(settings, FakeEncoder()))) as client:
        page = client.get("/ui/")
        assert page.status_code == 200  # the login page
        assert client.get("/ui/gradio_api/login_check").status_code == 401


def test_every_event_that_touches_services_gets_the_session() -> None:
    """Gradio hands each such handler its gr.Request (whose user name says which key acts)."""
    from gradio.helpers import special_args

    from rag_appliance.ui import build_ui
    from rag_appliance.ui.base import Handlers

    no_services = {"ask", "stop", "restore", "clear", "pick_row"}
    demo = build_ui(lambda: None, make_settings(server={"api_keys": KEYS}))
    checked: set[str] = set()
    for block_fn in demo.fns.values():
        fn: Any = block_fn.fn
        name = getattr(fn, "__name__", "")
        if not isinstance(getattr(fn, "__self__", None), Handlers) or name in no_services:
            continue
        marker = cast(gr.Request, SimpleNamespace(username="reader"))
        inputs, *_ = special_args(fn, inputs=[None] * len(block_fn.inputs), request=marker)
        assert marker in inputs, name
        if name == "listing":  # its outputs: the listing's and the write controls
            assert len(block_fn.outputs) == 5 + len(write_controls(None, None))
        checked.add(name)
    expected = {"on_load", "listing", "answer", "search", "upload", "open_clicked", "feedback"}
    assert expected <= checked
    assert {"jobs_listing", "cancel_job"} <= checked  # the Jobs tab (ui/jobs.py)
    assert len(checked) == 16
