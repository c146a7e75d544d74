"""`rag-appliance serve` in a subprocess for e2e tests: started on a data_dir, stopped however the
test ends."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def serve(data_dir: Path, log: Path, **env: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`python -m rag_appliance serve` on data_dir, generation and UI off: (proc, base URL)."""
    port = free_port()
    environ = os.environ | {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "RAG_DATA_DIR": str(data_dir),
        "RAG_GENERATION__ENABLED": "false",
        "RAG_SERVER__UI": "false",
        "RAG_EMBEDDING__DTYPE": "bfloat16",  # no dtype calibration at each start
        **env,
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rag_appliance", "serve", "--port", str(port)],
            cwd=ROOT,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.2)
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
