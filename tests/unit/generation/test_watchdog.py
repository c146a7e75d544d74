"""The generator's watchdog with `sleep` processes standing in for vLLM's engine core and worker."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag_appliance.generation import watchdog

ROOT = Path(__file__).resolve().parents[3]

# The "server": starts a core (a shell) with a worker (its `sleep` child), guards the core with
# the watchdog, prints the pids, then stops the watchdog when told on stdin, and waits.
SERVER = """
import json, subprocess, sys, time
from rag_appliance.generation.watchdog import Watchdog, descendants
core = subprocess.Popen(["sh", "-c", "sleep 300 & wait"])
deadline = time.monotonic() + 10
while not descendants([core.pid]) and time.monotonic() < deadline:
    time.sleep(0.02)
dog = Watchdog.start([core.pid], grace_s=float(sys.argv[1]))
pids = [core.pid, *descendants([core.pid])]
print(json.dumps({"dog": dog.pid, "pids": pids}), flush=True)
if sys.stdin.readline().strip() == "stop":
    print(json.dumps({"stopped": dog.stop()}), flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    return watchdog.start_time(pid) is not None


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


Server = tuple[subprocess.Popen[str], int, list[int]]


@pytest.fixture
def server() -> Iterator[Server]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, "2"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    started = json.loads(proc.stdout.readline())
    dog, pids = int(started["dog"]), [int(p) for p in started["pids"]]
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    try:
        yield proc, dog, pids
    finally:
        proc.kill()
        proc.wait()
        # Never leave a stand-in behind, whatever the test found.
        _kill([*pids, dog])


def test_server_sigkill_ends_the_guarded_processes_and_their_children(
    server: Server,
) -> None:
    proc, dog, pids = server
    time.sleep(0.3)  # the watchdog is up and waiting
    assert all(_alive(p) for p in pids)
    proc.kill()
    proc.wait()
    assert _wait_gone(pids, 10) == []
    assert _wait_gone([dog], 5) == []


def test_a_stopped_watchdog_exits_and_leaves_the_processes_alone(
    server: Server,
) -> None:
    proc, dog, pids = server
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("stop\n")
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline()) == {"stopped": -signal.SIGTERM}
    assert _wait_gone([dog], 5) == []
    proc.kill()
    proc.wait()
    time.sleep(1.5)  # past the watchdog's poll: nothing is left to act on the server's death
    assert all(_alive(p) for p in pids)


def test_end_processes_escalates_to_sigkill_and_spares_a_reused_pid() -> None:
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
        own = watchdog.start_time(stubborn.pid)
        other = watchdog.start_time(bystander.pid)
        assert own is not None and other is not None
        started = time.monotonic()
        # The bystander's pid with another start time stands for a pid reused since recorded.
        watchdog.end_processes({stubborn.pid: own, bystander.pid: other + 1}, grace_s=1.0)
        assert time.monotonic() - started >= 1.0  # SIGTERM was ignored: SIGKILL after grace
        assert stubborn.wait(5) == -signal.SIGKILL
        assert bystander.poll() is None
    finally:
        stubborn.kill()
        bystander.kill()
        stubborn.wait()
        bystander.wait()


def test_start_time_is_none_for_a_zombie_or_a_missing_pid() -> None:
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 5
    # Not waited yet: a zombie, which holds no memory and counts as gone.
    while watchdog.start_time(child.pid) is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert watchdog.start_time(child.pid) is None
    child.wait()
    assert watchdog.start_time(child.pid) is None
    assert watchdog.start_time(os.getpid()) is not None
