"""bench/lib/servers.py: server specs, the environment, and a server's start, wait and stop."""

from __future__ import annotations

import os
import sys
import uuid
from typing import Any

import httpx
import pytest

# A stand-in server: answers GET /ready and POST /v1/embeddings on --port N (appended by
# start_server), after an optional delay given as its first argument.
FAKE_SERVER = r"""
import http.server, sys, time
time.sleep(float(sys.argv[1]))
port = int(sys.argv[sys.argv.index("--port") + 1])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/ready" else 404); self.end_headers()
    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200); self.end_headers()
    def log_message(self, *args):
        pass
print("fake server up", flush=True)
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@pytest.fixture
def servers(bench_module: Any) -> Any:
    return bench_module("lib.servers")


def fake_spec(servers: Any, code: str, *args: str, bare_list: bool = False) -> Any:
    name = f"test-bench-{uuid.uuid4().hex[:8]}"
    return servers.ServerSpec(name, [sys.executable, "-c", code, *args], bare_list)


def test_specs_for_the_appliance_and_the_seed(servers: Any) -> None:
    plain = servers.appliance_spec("a")
    assert plain.argv == [sys.executable, "-m", "rag_appliance", "serve", "--host", "127.0.0.1"]
    assert not plain.bare_list_body
    assert servers.appliance_spec("a", "cfg.yaml").argv[-2:] == ["--config", "cfg.yaml"]
    seed = servers.seed_spec("s", ["--model", "m"])
    assert seed.bare_list_body
    assert seed.argv[0] == sys.executable
    assert seed.argv[1].endswith(os.path.join("bench", "seed_server.py"))
    assert os.path.isfile(seed.argv[1])
    assert seed.argv[2:] == ["--model", "m"]


def test_environ_sets_and_restores(servers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_TEST_KEEP", "old")
    monkeypatch.delenv("BENCH_TEST_NEW", raising=False)
    with servers.environ({"BENCH_TEST_KEEP": "new", "BENCH_TEST_NEW": "1"}):
        assert os.environ["BENCH_TEST_KEEP"] == "new"
        assert os.environ["BENCH_TEST_NEW"] == "1"
    assert os.environ["BENCH_TEST_KEEP"] == "old"
    assert "BENCH_TEST_NEW" not in os.environ


@pytest.mark.parametrize("bare_list", [False, True])
def test_a_server_starts_answers_and_stops(servers: Any, bare_list: bool) -> None:
    """Launched on a free port with its env; ready by /ready (appliance) or a POST (seed)."""
    spec = fake_spec(servers, FAKE_SERVER, "0.3", bare_list=bare_list)
    server = servers.launch(spec, "k", {"BENCH_TEST_VAR": "1"})
    try:
        assert server.key == "k"
        assert server.base == f"http://127.0.0.1:{server.port}"
        assert server.proc.args[-2:] == ["--port", str(server.port)]
        servers.ensure_ready(server, timeout_s=60)
        assert httpx.get(f"{server.base}/ready", trust_env=False).status_code == 200
    finally:
        servers.stop_servers([server])
    assert server.proc.poll() is not None
    assert "fake server up" in servers.log_tail(spec.name)
    assert "BENCH_TEST_VAR" not in os.environ


def test_a_server_that_dies_is_reported_with_its_log(servers: Any) -> None:
    spec = fake_spec(servers, "import sys; print('boom: no model'); sys.exit(3)")
    server = servers.launch(spec)
    try:
        outcome = servers.wait_servers([server], timeout_s=60)[0]
    finally:
        servers.stop_server(server.proc)
    assert isinstance(outcome, RuntimeError)
    assert f"{spec.name} exited with 3 before it was ready" in str(outcome)
    assert "boom: no model" in str(outcome)


def test_a_server_that_never_answers_times_out(servers: Any) -> None:
    spec = fake_spec(servers, "import time; time.sleep(60)")
    server = servers.launch(spec)
    try:
        with pytest.raises(RuntimeError, match="not ready after 1 s"):
            servers.ensure_ready(server, timeout_s=1.0)
    finally:
        servers.stop_server(server.proc)
    assert server.proc.poll() is not None


def test_free_port_is_bindable(servers: Any) -> None:
    import socket

    port = servers.free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
