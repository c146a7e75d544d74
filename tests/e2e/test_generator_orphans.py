"""No orphans: SIGKILL `python -m rag_appliance serve` and every process it started ends too."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from rag_appliance.generation.watchdog import descendants, start_time
from tests.conftest import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"


def _still_same(procs: dict[int, int]) -> dict[int, int]:
    return {pid: st for pid, st in procs.items() if start_time(pid) == st}


def test_sigkilled_server_leaves_no_generator_processes(tmp_path: Path) -> None:
    port = free_port()
    env = os.environ | {
        "HF_HUB_OFFLINE": "1",
        "RAG_DATA_DIR": str(tmp_path / "data"),
        "RAG_GENERATION__MODEL_CACHE_DIR": str(ROOT / "test-output" / "models"),
        "RAG_SERVER__UI": "false",
    }
    log = (tmp_path / "server.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag_appliance", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    below: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 600
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.5)
        below = descendants([proc.pid])
        names = {pid: _cmdline(pid) for pid in below}
        # The engine core, its worker and the watchdog, at least.
        assert len(below) >= 3, names
        assert any("watchdog" in name for name in names.values()), names

        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 20
        while _still_same(below) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = {pid: names[pid] for pid in _still_same(below)}
        assert left == {}, f"outlived the server: {left}\n{(tmp_path / 'server.log').read_text()}"
        assert "ending generator processes" in (tmp_path / "server.log").read_text()
    finally:
        if proc.poll() is None:
            below.update(descendants([proc.pid]))
            proc.kill()
            proc.wait(10)
        # A failing run must not leave vLLM's processes (and their memory) behind either.
        for pid in _still_same(below):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        log.close()
