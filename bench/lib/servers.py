"""The servers a benchmark measures: how to start each one, wait until it answers, and stop it.

Every server runs as a subprocess of the benchmark on a free port of 127.0.0.1 (`--port N` is
appended to its command line), from the repository root, with its output in
bench/.cache/logs/<name>.log. Two kinds: the appliance (`python -m rag_appliance serve`, ready
when GET /ready answers 200) and the seed document's server (bench/seed_server.py, which has no
/ready: ready when a one-text POST answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from lib import BENCH, ROOT
from lib.driver import log
from lib.load import http_client

LOGS = BENCH / ".cache" / "logs"
READY_TIMEOUT_S = 300.0
# The appliance for an embeddings benchmark: an idle chat engine and the UI would only take
# memory and start time.
EMBEDDINGS_ONLY = {"RAG_GENERATION__ENABLED": "false", "RAG_SERVER__UI": "false"}


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server, tell that it is ready and talk to it."""

    name: str
    argv: list[str]
    bare_list_body: bool


def appliance_spec(name: str, config: str | None = None) -> ServerSpec:
    """`python -m rag_appliance serve` on 127.0.0.1, optionally with a YAML profile."""
    argv = [sys.executable, "-m", "rag_appliance", "serve", "--host", "127.0.0.1"]
    if config:
        argv += ["--config", config]
    return ServerSpec(name, argv, False)


def seed_spec(name: str, options: Sequence[str] = ()) -> ServerSpec:
    """bench/seed_server.py with its options (none: the bundled MiniLM on the CPU)."""
    return ServerSpec(name, [sys.executable, str(BENCH / "seed_server.py"), *options], True)


@dataclass
class Server:
    """A started server process, its port, and what it serves (`key`: the caller's label)."""

    key: str
    spec: ServerSpec
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def base(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def environ(updates: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block."""
    saved = {k: os.environ.get(k) for k in updates}
    os.environ.update(updates)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def start_server(spec: ServerSpec, port: int) -> subprocess.Popen[bytes]:
    """Launch a server (this process's environment, offline); output to its log file."""
    LOGS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with (LOGS / f"{spec.name}.log").open("wb") as out:
        return subprocess.Popen(
            [*spec.argv, "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def launch(spec: ServerSpec, key: str = "", env: dict[str, str] | None = None) -> Server:
    """Start one server on a free port, with `env` on top of this process's environment."""
    port = free_port()
    log(f"{spec.name}: starting {shlex.join([*spec.argv, '--port', str(port)])}")
    with environ(env or {}):
        return Server(key or spec.name, spec, port, start_server(spec, port))


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 30 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_servers(servers: Sequence[Server]) -> None:
    """SIGTERM to all at once, then wait for each (SIGKILL after 30 s)."""
    for server in servers:
        if server.proc.poll() is None:
            server.proc.terminate()
    for server in servers:
        stop_server(server.proc)


def log_tail(name: str, lines: int = 30) -> str:
    """The end of a server's log, for error messages."""
    path = LOGS / f"{name}.log"
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def wait_ready(
    client: httpx.AsyncClient,
    base: str,
    spec: ServerSpec,
    proc: subprocess.Popen[bytes],
    timeout_s: float = READY_TIMEOUT_S,
) -> None:
    """Poll until the server answers: GET /ready for the appliance, a tiny POST for the seed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{spec.name} exited with {proc.returncode} before it was ready:\n"
                + log_tail(spec.name)
            )
        try:
            if spec.bare_list_body:
                response = await client.post(f"{base}/v1/embeddings", json=["ready?"])
            else:
                response = await client.get(f"{base}/ready")
            if response.status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.25)
    raise RuntimeError(f"{spec.name} not ready after {timeout_s:.0f} s:\n{log_tail(spec.name)}")


def wait_servers(
    servers: Sequence[Server], timeout_s: float = READY_TIMEOUT_S
) -> list[BaseException | None]:
    """Wait until every server answers, all at once; each one's failure (None: ready)."""

    async def all_ready() -> list[Any]:
        async with http_client(max(4, len(servers))) as client:
            return await asyncio.gather(
                *(wait_ready(client, s.base, s.spec, s.proc, timeout_s) for s in servers),
                return_exceptions=True,
            )

    started = time.perf_counter()
    outcomes = asyncio.run(all_ready())
    names = ", ".join(s.spec.name for s in servers)
    log(f"{names}: ready after another {time.perf_counter() - started:.1f} s")
    return [o if isinstance(o, BaseException) else None for o in outcomes]


def ensure_ready(server: Server, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Wait for one server; raise its failure."""
    error = wait_servers([server], timeout_s)[0]
    if error is not None:
        raise error
