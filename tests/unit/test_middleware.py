"""HTTP metrics middleware: scraped through the app, and its timing of streamed bodies."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import Message, Receive, Scope, Send

from rag_appliance import middleware
from rag_appliance.app import create_app
from rag_appliance.middleware import HttpMetricsMiddleware
from rag_appliance.observability import Metrics
from tests.conftest import make_services, make_settings
from tests.fakes import FakeEncoder, FakeGenerator

Labels = tuple[tuple[str, str], ...]


def scrape(client: TestClient) -> dict[tuple[str, Labels], float]:
    """Every sample of /metrics, keyed by (name, sorted labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def http(method: str, route: str, status: int) -> Labels:
    return (("method", method), ("route", route), ("status", str(status)))


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = make_settings(server={"max_body_bytes": 2048})
    services = make_services(settings, FakeEncoder(), generator=FakeGenerator())
    with TestClient(create_app(settings, services)) as c:
        yield c


def test_http_and_stage_histograms_after_requests(client: TestClient) -> None:
    before = scrape(client)
    for _ in range(2):
        assert client.post("/v1/embeddings", json={"input": ["abc", "de"]}).status_code == 200
    assert client.post("/v1/embeddings", json={"input": ""}).status_code == 400
    assert client.get("/v1/nothing/here").status_code == 404
    assert client.get("/v1/models/fake-alias").status_code == 200
    after = scrape(client)

    ok = http("POST", "/v1/embeddings", 200)
    assert after[("rag_http_requests_total", ok)] == 2
    assert after[("rag_http_request_duration_seconds_count", ok)] == 2
    inf = tuple(sorted((*ok, ("le", "+Inf"))))
    assert after[("rag_http_request_duration_seconds_bucket", inf)] == 2
    assert after[("rag_http_request_duration_seconds_sum", ok)] > 0
    assert after[("rag_http_requests_total", http("POST", "/v1/embeddings", 400))] == 1
    assert after[("rag_http_requests_total", http("GET", "unmatched", 404))] == 1
    # Route templates, never raw paths: the label space stays bounded.
    assert after[("rag_http_requests_total", http("GET", "/v1/models/{model_id}", 200))] == 1
    labels = {dict(k[1]).get("route") for k in after}
    assert "/v1/models/fake-alias" not in labels and "/v1/nothing/here" not in labels
    # The first scrape is counted once it has been answered.
    assert after[("rag_http_requests_total", http("GET", "/metrics", 200))] == 1
    assert ("rag_http_requests_total", ok) not in before

    # Stage histograms: two passes of two inputs each, every input's wait observed.
    assert after[("rag_embedding_batch_size_count", ())] == 2
    assert after[("rag_embedding_batch_size_sum", ())] == 4
    assert after[("rag_embedding_queue_wait_seconds_count", ())] == 4
    assert after[("rag_embedding_forward_seconds_count", ())] == 2
    padded = after[("rag_embedding_padded_tokens_total", ())]
    assert after[("rag_embedding_batch_tokens_sum", ())] == padded == 2 * (2 * 5)
    assert after[("rag_embedding_batch_tokens_bucket", (("le", "16.0"),))] == 2
    # Defined from the start, observed by retrieval and chat.
    assert after[("rag_retrieval_seconds_count", ())] == 0
    assert ("rag_chat_time_to_first_token_seconds_count", ()) in after
    # The batcher's counters are still there.
    assert after[("rag_embedding_forward_passes_total", ())] == 2
    assert after[("rag_embedding_items_total", ())] == 4


def test_retrieval_and_ttft_observers_show_in_the_scrape(client: TestClient) -> None:
    metrics: Metrics = client.app.state.services.metrics  # type: ignore[attr-defined]
    metrics.observe_retrieval(0.03)
    metrics.observe_ttft(0.2)
    metrics.observe_ttft(0.4)
    after = scrape(client)
    assert after[("rag_retrieval_seconds_count", ())] == 1
    assert after[("rag_retrieval_seconds_bucket", (("le", "0.05"),))] == 1
    assert after[("rag_chat_time_to_first_token_seconds_count", ())] == 2
    assert after[("rag_chat_time_to_first_token_seconds_sum", ())] == pytest.approx(0.6)


def test_rejected_bodies_methods_and_streams_are_labelled_by_route(client: TestClient) -> None:
    big = client.post("/v1/embeddings", json={"input": "x" * 4096})
    assert big.status_code == 413  # refused before routing, still labelled by its route
    assert client.get("/v1/embeddings").status_code == 405
    assert client.request("BREW", "/v1/embeddings").status_code == 405
    streamed = client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "Hi?"}], "stream": True},
    )
    assert streamed.status_code == 200 and "[DONE]" in streamed.text
    after = scrape(client)
    assert after[("rag_http_requests_total", http("POST", "/v1/embeddings", 413))] == 1
    assert after[("rag_http_requests_total", http("GET", "/v1/embeddings", 405))] == 1
    assert after[("rag_http_requests_total", http("other", "/v1/embeddings", 405))] == 1
    chat = http("POST", "/v1/chat/completions", 200)
    assert after[("rag_http_request_duration_seconds_count", chat)] == 1


def test_two_apps_in_one_process_count_separately() -> None:
    settings = make_settings()
    apps = [create_app(settings, make_services(settings, FakeEncoder())) for _ in range(2)]
    with TestClient(apps[0]) as first, TestClient(apps[1]) as second:
        first.post("/v1/embeddings", json={"input": "a"})
        ok = ("rag_http_requests_total", http("POST", "/v1/embeddings", 200))
        assert scrape(first)[ok] == 1
        assert ok not in scrape(second)


class Clock:
    """perf_counter stand-in: each read returns the next value."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def __call__(self) -> float:
        return self.values.pop(0)


async def run(app: Any, metrics: Metrics, scope: dict[str, Any]) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    wrapped = HttpMetricsMiddleware(app, metrics=lambda: metrics, routes=[])
    await wrapped(scope, receive, send)
    return sent


SCOPE = {"type": "http", "method": "GET", "path": "/stream", "root_path": "", "headers": []}


async def test_a_streamed_body_is_passed_through_and_timed_to_its_last_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first_chunk_out = asyncio.Event()
    metrics = Metrics()

    async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        # Reached only if the middleware forwarded the chunk instead of buffering the body.
        await asyncio.wait_for(first_chunk_out.wait(), 5)
        await send({"type": "http.response.body", "body": b"b", "more_body": False})

    async def watching(scope: Scope, receive: Receive, send: Send) -> None:
        async def forward(message: Message) -> None:
            if message.get("body") == b"a":
                first_chunk_out.set()
            await send(message)

        await streaming(scope, receive, forward)

    # Start at 10, last body at 13; anything the app does after it is not the client's wait.
    monkeypatch.setattr(middleware, "time", SimpleNamespace(perf_counter=Clock(10.0, 13.0)))
    sent = await run(watching, metrics, dict(SCOPE))
    assert [m.get("body") for m in sent[1:]] == [b"a", b"b"]
    labels = {"method": "GET", "route": "unmatched", "status": "200"}
    sample = metrics.registry.get_sample_value
    assert sample("rag_http_request_duration_seconds_sum", labels) == 3.0


async def test_an_app_that_raises_is_counted_as_a_500(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = Metrics()

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(middleware, "time", SimpleNamespace(perf_counter=Clock(1.0, 1.5)))
    with pytest.raises(RuntimeError):
        await run(broken, metrics, dict(SCOPE))
    labels = {"method": "GET", "route": "unmatched", "status": "500"}
    assert metrics.registry.get_sample_value("rag_http_requests_total", labels) == 1
    assert metrics.registry.get_sample_value("rag_http_request_duration_seconds_sum", labels) == 0.5


async def test_no_metrics_yet_means_a_plain_pass_through() -> None:
    calls: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(scope["type"])

    wrapped = HttpMetricsMiddleware(app, metrics=lambda: None, routes=[])
    await wrapped({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    await wrapped(dict(SCOPE), None, None)  # type: ignore[arg-type]
    assert calls == ["lifespan", "http"]
