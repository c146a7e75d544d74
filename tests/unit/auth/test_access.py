"""auth.access: the principal in the request's context and the checks the services make."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from rag_appliance.auth.access import (
    PermissionDenied,
    acting_as,
    authorize_admin,
    authorize_read,
    authorize_write,
    current_principal,
    iterate_as,
    readable,
)
from rag_appliance.auth.keys import FULL_ACCESS, Principal

TEAM_A_RO = Principal("reader", "read-only", ("team-a-*",))
TEAM_A_RW = Principal("alice", "read-write", ("team-a-*",))


def test_without_a_principal_everything_passes() -> None:
    # The CLI, the evaluation harness and tests call the services without one.
    assert current_principal() is None
    authorize_read("x")
    authorize_write("x")
    authorize_admin("/metrics")
    assert readable(["a", "b"]) == ["a", "b"]


def test_acting_as_sets_and_restores() -> None:
    with acting_as(TEAM_A_RO) as p:
        assert current_principal() is p
        with acting_as(FULL_ACCESS):
            authorize_write("team-b")
        assert current_principal() is TEAM_A_RO
    assert current_principal() is None


def test_out_of_scope_is_one_answer_for_reads_and_writes() -> None:
    with acting_as(TEAM_A_RW):
        with pytest.raises(PermissionDenied) as read:
            authorize_read("team-b")
        with pytest.raises(PermissionDenied) as write:
            authorize_write("team-b")
    for info in (read, write):
        error = info.value
        assert (error.status, error.code, error.param) == (403, "permission_denied", "collection")
        assert error.message == (
            "This API key has no access to collection 'team-b' (it may use: team-a-*)."
        )


def test_read_only_in_scope_may_read_not_write() -> None:
    with acting_as(TEAM_A_RO):
        authorize_read("team-a-docs")
        with pytest.raises(PermissionDenied, match="read-only") as info:
            authorize_write("team-a-docs")
        assert info.value.body()["error"]["type"] == "invalid_request_error"
        assert readable(["team-b", "team-a-1", "team-a-2", "x"]) == ["team-a-1", "team-a-2"]
        with pytest.raises(PermissionDenied, match="admin"):
            authorize_admin("/metrics")


async def test_iterate_as_holds_across_steps_in_other_tasks() -> None:
    async def stream() -> AsyncIterator[str]:
        for _ in range(3):
            principal = current_principal()
            yield principal.name if principal and principal.name else "none"

    items = iterate_as(TEAM_A_RO, stream())
    # Each step in a task of its own, as Gradio runs a streaming handler's steps.
    seen = [await asyncio.create_task(anext_or_none(items)) for _ in range(4)]
    assert seen == ["reader", "reader", "reader", None]
    assert current_principal() is None


async def anext_or_none(items: AsyncIterator[str]) -> str | None:
    try:
        return await items.__anext__()
    except StopAsyncIteration:
        return None


async def test_tasks_started_while_acting_keep_the_principal() -> None:
    async def who() -> Principal | None:
        await asyncio.sleep(0)
        return current_principal()

    with acting_as(TEAM_A_RW):
        task = asyncio.create_task(who())
    assert await task is TEAM_A_RW
