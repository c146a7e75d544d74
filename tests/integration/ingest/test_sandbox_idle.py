"""The parse workers stop when idle and start again for the next file (real worker processes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import psutil
import pytest

from rag_appliance.ingest.sandbox import ParseSandbox
from rag_appliance.settings import IngestSettings

TEXT = b"The lighthouse on Skarv was lit by hand until 1911.\n"


def sandbox_with(idle_s: float | None) -> ParseSandbox:
    return ParseSandbox.from_settings(IngestSettings(parse_workers=1, parse_idle_s=idle_s))


@pytest.fixture
def sandboxes() -> Iterator[list[ParseSandbox]]:
    made: list[ParseSandbox] = []
    yield made
    for sandbox in made:
        sandbox.close()


def workers() -> list[psutil.Process]:
    """This process's live spawned children (the pool's workers, not its resource tracker)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            spawned = "spawn_main" in " ".join(child.cmdline())
            if spawned and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.Error:
            continue
    return found


def parse(sandbox: ParseSandbox) -> str:
    return asyncio.run(sandbox.parse(TEXT, "skarv.txt", "text/plain")).text


def wait_until_stopped(sandbox: ParseSandbox, within_s: float = 20) -> bool:
    deadline = time.monotonic() + within_s
    while sandbox.running and time.monotonic() < deadline:
        time.sleep(0.05)
    return not sandbox.running


def test_idle_workers_stop_and_the_next_file_starts_them(sandboxes: list[ParseSandbox]) -> None:
    sandbox = sandbox_with(0.3)
    sandboxes.append(sandbox)
    assert "Skarv" in parse(sandbox)
    assert sandbox.running and workers()
    assert wait_until_stopped(sandbox)
    deadline = time.monotonic() + 10
    while workers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not workers()  # the processes are gone, not just forgotten
    assert "Skarv" in parse(sandbox)  # started again
    assert sandbox.running and workers()


def test_without_an_idle_limit_the_workers_stay(sandboxes: list[ParseSandbox]) -> None:
    sandbox = sandbox_with(None)
    sandboxes.append(sandbox)
    assert "Skarv" in parse(sandbox)
    time.sleep(1.0)
    assert sandbox.running and workers()
