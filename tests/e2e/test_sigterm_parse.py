"""SIGTERM stops `rag-appliance serve` within 5 s while a parse worker chews on a zip bomb."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from tests.conftest import free_port
from tests.ingest_bombs import docx_bomb

ROOT = Path(__file__).resolve().parents[2]


def wait_ready(proc: subprocess.Popen[str], url: str) -> None:
    deadline = time.monotonic() + 600
    while True:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else "server exited"
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.5)


def busy_workers(server: psutil.Process) -> list[psutil.Process]:
    """The server's parse workers that have used CPU (one is parsing)."""
    workers = [p for p in server.children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]
    return [p for p in workers if sum(p.cpu_times()[:2]) > 1.0]


def test_sigterm_stops_the_server_within_5s_during_a_parse(tmp_path: Path) -> None:
    bomb = docx_bomb(295)
    port = free_port()
    env = os.environ | {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "RAG_DATA_DIR": str(tmp_path / "data"),
        "RAG_GENERATION__ENABLED": "false",
        "RAG_SERVER__UI": "false",
        # The zip checks relaxed and a long parse limit: python-docx is left to chew on it.
        "RAG_INGEST__MAX_UNZIPPED_BYTES": str(2**31),
        "RAG_INGEST__MAX_ZIP_RATIO": str(10**6),
        "RAG_INGEST__PARSE_TIMEOUT_S": "120",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag_appliance", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    conn = None
    try:
        wait_ready(proc, url)
        server = psutil.Process(proc.pid)
        boundary = "B0undary"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="collection"\r\n\r\nkb\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
                'filename="bomb.docx"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + bomb
            + f"\r\n--{boundary}--\r\n".encode()
        )
        conn = socket.create_connection(("127.0.0.1", port))
        conn.sendall(
            (
                f"POST /v1/index/upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        deadline = time.monotonic() + 60
        while not (workers := busy_workers(server)):
            assert time.monotonic() < deadline, "no parse worker got busy"
            time.sleep(0.1)
        assert proc.poll() is None
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        elapsed = time.monotonic() - started
        assert elapsed < 5, f"SIGTERM took {elapsed:.1f}s to stop the server"
        # The worker did not outlive it.
        _, alive = psutil.wait_procs(workers, timeout=2)
        assert not alive, f"parse workers left running: {alive}"
    finally:
        if conn is not None:
            conn.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
