"""Thumbs on the sources of an answer: shown once the answer is logged, and sent through the
/v1/feedback service as the signed-in key (a key without access records nothing)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import gradio as gr
import pytest

from rag_appliance.feedback.log import log_dir, log_files, read_records
from rag_appliance.ingest.pipeline import Document
from rag_appliance.services import Services
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from rag_appliance.ui.chat import ChatActions
from tests.conftest import make_services, make_settings
from tests.fakes import FakeEncoder, FakeGenerator
from tests.unit.auth.conftest import KEYS
from tests.unit.ui.conftest import Request

TEAM_A = "team-a-docs"
ALICE = cast(gr.Request, Request(username="alice"))  # read-write, team-a-*
STRANGER = cast(gr.Request, Request(username="stranger"))  # no key's name: no access


async def started(tmp_path: Path, tokenizer: Any, enabled: bool) -> Services:
    settings = make_settings(
        server={"api_keys": KEYS},
        generation={"max_tokens": 32},
        rag={"top_k": 2},
        search_log={"enabled": enabled},
    ).model_copy(update={"data_dir": tmp_path})
    generator = FakeGenerator(reply="Goats graze on the island [1].", max_model_len=1024)
    store = QdrantEdgeStore(tmp_path / "db")
    services = make_services(settings, FakeEncoder(), store, generator, tokenizer=tokenizer)
    await services.start()
    docs = [
        Document("Goats graze on the island.", id="goats.txt"),
        Document("Llamas hum softly.", id="llamas.txt"),
    ]
    await services.require_pipeline().index(TEAM_A, docs)
    return services


@pytest.fixture
async def services(tmp_path: Path, tokenizer: Any) -> AsyncIterator[Services]:
    services = await started(tmp_path, tokenizer, enabled=True)
    yield services
    await services.stop()


async def final_panel(chat: ChatActions, request: gr.Request) -> str:
    history = [{"role": "user", "content": "Where do goats graze?"}]
    outputs = [o async for o in chat.answer(history, TEAM_A, False, 2, 0.0, 32, request)]
    return str(outputs[-1][2])


def feedback_records(data_dir: Path) -> list[dict[str, Any]]:
    records = read_records(log_files(log_dir(data_dir)))
    return [r for r in records if r["type"] == "feedback"]


def thumb(event_id: str, chunk_id: str, label: str) -> gr.EventData:
    data = {"event_id": event_id, "chunk_id": chunk_id, "label": label}
    return cast(gr.EventData, SimpleNamespace(_data=data))


async def test_a_thumb_sends_feedback_as_the_signed_in_key(
    services: Services, tmp_path: Path
) -> None:
    chat = ChatActions(lambda: services)
    panel = await final_panel(chat, ALICE)
    event_ids = set(re.findall(r'data-event="([^"]+)"', panel))
    chunk_ids = re.findall(r'data-chunk-id="([^"]+)"', panel)
    assert len(event_ids) == 1 and len(chunk_ids) == 4  # up and down on each of 2 sources
    (event_id,) = event_ids
    assert services.search_log is not None and services.search_log.known(event_id)
    await chat.feedback(thumb(event_id, chunk_ids[0], "negative"), ALICE)
    (record,) = feedback_records(tmp_path)
    assert record["event_id"] == event_id and record["chunk_ids"] == [chunk_ids[0]]
    assert record["label"] == "negative" and record["key"] == "alice"


async def test_a_thumb_without_access_or_on_nothing_records_nothing(
    services: Services, tmp_path: Path
) -> None:
    chat = ChatActions(lambda: services)
    panel = await final_panel(chat, ALICE)
    event_id = re.findall(r'data-event="([^"]+)"', panel)[0]
    chunk_id = re.findall(r'data-chunk-id="([^"]+)"', panel)[0]
    with pytest.warns(UserWarning, match="sign in again"):
        await chat.feedback(thumb(event_id, chunk_id, "positive"), STRANGER)
    with pytest.warns(UserWarning, match="No logged search or chat completion"):
        await chat.feedback(thumb("ui-unknown", chunk_id, "positive"), ALICE)
    with pytest.warns(UserWarning, match="thumb up or down"):
        await chat.feedback(thumb(event_id, chunk_id, "sideways"), ALICE)
    assert feedback_records(tmp_path) == []


async def test_no_thumbs_while_the_search_log_is_off(tmp_path: Path, tokenizer: Any) -> None:
    services = await started(tmp_path, tokenizer, enabled=False)
    try:
        panel = await final_panel(ChatActions(lambda: services), ALICE)
    finally:
        await services.stop()
    assert "goats.txt" in panel and "data-label" not in panel
