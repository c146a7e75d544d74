"""The web UI's side: its login maps a user name and key to a principal, and the services refuse
what that principal may not do when the UI acts as it (acting_as around each event)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rag_appliance.auth import (
    ANONYMOUS,
    FULL_ACCESS,
    PermissionDenied,
    acting_as,
    login,
    ui_auth,
    ui_principal,
)
from rag_appliance.ingest.files import FileBlob, index_files
from rag_appliance.ingest.pipeline import Document
from rag_appliance.services import Services
from rag_appliance.settings import Settings, load_settings
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.conftest import make_services
from tests.fakes import FakeEncoder
from tests.unit.auth.conftest import ADMIN, HASHED, KEYS, RO_A, RW_A


def settings_with(keys: list[Any]) -> Settings:
    return load_settings(server={"api_keys": keys, "ui": False})


SETTINGS = settings_with(KEYS)


def test_named_keys_sign_in_with_their_name_only() -> None:
    alice = login(SETTINGS, "alice", RW_A)
    assert alice is not None and alice.collections == ("team-a-*",)
    assert login(SETTINGS, " alice ", RW_A) == alice  # Gradio strips the name too
    assert login(SETTINGS, "bob", RW_A) is None
    assert login(SETTINGS, "reader", RW_A) is None  # another key's name
    assert login(SETTINGS, "alice", "wrong") is None


def test_unnamed_keys_sign_in_with_any_free_name_when_they_grant_one_access() -> None:
    assert login(settings_with(["k1", "k2"]), "anyone", "k2") == FULL_ACCESS  # as before
    # Here the unnamed keys differ (admin and a hashed read-only key): a session's name could
    # not tell them apart, so they cannot sign in to the UI until they are named.
    assert login(SETTINGS, "anyone", ADMIN) is None
    assert login(SETTINGS, "anyone", HASHED) is None
    assert login(SETTINGS, "alice", ADMIN) is None  # never as another key's name


def test_ui_auth_is_gradios_check() -> None:
    check = ui_auth(SETTINGS)
    assert check is not None and check("reader", RO_A) and not check("reader", "x")
    assert ui_auth(settings_with([])) is None  # no keys: the UI is open


def test_ui_principal_from_the_session_name() -> None:
    reader = ui_principal(SETTINGS, "reader")
    assert reader.role == "read-only" and reader.collections == ("team-a-*",)
    assert ui_principal(SETTINGS, None) == ANONYMOUS
    assert ui_principal(SETTINGS, "stranger") == ANONYMOUS  # unnamed keys differ: fails closed
    assert ui_principal(settings_with(["k"]), "anyone") == FULL_ACCESS
    assert ui_principal(settings_with([]), None) == FULL_ACCESS


@pytest.fixture
async def services(tokenizer: Any, tmp_path: Path) -> AsyncIterator[Services]:
    services = make_services(
        SETTINGS, FakeEncoder(), QdrantEdgeStore(tmp_path / "db"), tokenizer=tokenizer
    )
    await services.start()
    pipeline = services.require_pipeline()
    for name in ("team-a-docs", "team-b"):  # seeded as the CLI would: no principal
        await pipeline.index(name, [Document("Goats graze on the island.", id="goats")])
    yield services
    await services.stop()


async def test_the_ui_acting_as_a_team_a_key(services: Services) -> None:
    collections = services.require_collections()
    retriever = services.require_retriever()
    pipeline = services.require_pipeline()
    blob = [FileBlob("notes.txt", b"Llamas hum.")]
    with acting_as(ui_principal(SETTINGS, "alice")):
        assert [info.name for info, _ in await collections.all()] == ["team-a-docs"]
        assert (await collections.get("team-a-docs"))[1] == 1
        assert await retriever.search("team-a-docs", "goats")
        denials = [
            collections.get("team-b"),
            collections.check("team-b"),  # the UI's document viewer checks, then scrolls
            collections.documents("team-b", 10),
            collections.document("team-b", "goats"),
            collections.delete_document("team-b", "goats"),
            collections.delete("team-b"),
            collections.ensure("team-b"),
            collections.enable_sparse("team-b"),
            retriever.run("team-b", "goats"),
            index_files(pipeline, "team-b", blob),
        ]
        for call in denials:
            with pytest.raises(PermissionDenied):
                await call
        outcomes = await index_files(pipeline, "team-a-docs", blob)
        assert outcomes[0].status == "indexed"
    assert len(await collections.all()) == 2  # no principal again: everything


async def test_the_ui_acting_as_a_read_only_key(services: Services) -> None:
    collections = services.require_collections()
    with acting_as(ui_principal(SETTINGS, "reader")):
        await collections.documents("team-a-docs", 10)
        for call in (
            collections.ensure("team-a-new"),
            collections.delete_document("team-a-docs", "goats"),
            collections.delete("team-a-docs"),
        ):
            with pytest.raises(PermissionDenied, match="read-only"):
                await call
    with acting_as(ANONYMOUS):
        assert await collections.all() == []
