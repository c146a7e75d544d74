"""Retrieve-then-generate through HTTP: real embedder and store, fake generator (fast)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from rag_appliance.chat.prompt import NO_CONTEXT
from rag_appliance.embedding.encoder import Encoder
from rag_appliance.services import Services
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.conftest import live_server, make_services, make_settings
from tests.fakes import FakeGenerator

FACT = "The secret launch code of project Bluefin is amber-falcon-17."
OTHER = "The cafeteria serves lentil soup every Tuesday at noon."


@pytest.fixture
def rig(encoder: Encoder, tmp_path: Path) -> Iterator[tuple[str, Services, FakeGenerator]]:
    settings = make_settings(generation={"record_prompts": 5}, rag={"default_collection": "kb"})
    generator = FakeGenerator(max_model_len=2048)
    services = make_services(settings, encoder, QdrantEdgeStore(tmp_path / "db"), generator)
    with live_server(settings, encoder, services=services) as url:
        docs = [
            {"id": "bluefin", "text": FACT, "metadata": {"team": "space"}},
            {"id": "food", "text": OTHER},
        ]
        r = httpx.post(f"{url}/v1/index", json={"collection": "kb", "documents": docs}, timeout=60)
        assert r.status_code == 200
        yield url, services, generator


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def test_rag_sources_and_prompt_contain_the_fact(rig: tuple[str, Services, FakeGenerator]) -> None:
    url, services, generator = rig
    response = client(url).chat.completions.create(
        model="fake-chat",
        messages=[{"role": "user", "content": "What is the launch code of project Bluefin?"}],
        extra_body={"rag": {"collection": "kb", "top_k": 2}},
    )
    sources: list[dict[str, Any]] = response.model_extra["sources"]  # type: ignore[index]
    assert sources[0]["doc_id"] == "bluefin" and sources[0]["index"] == 1
    assert sources[0]["metadata"] == {"team": "space"} and "amber-falcon-17" in sources[0]["text"]
    prompt = generator.decode(generator.prompts[-1])
    assert "amber-falcon-17" in prompt and "[1]" in prompt and "Cite" in prompt
    recorded = services.chat.recorded[-1] if services.chat else None
    assert recorded is not None and recorded.messages[0].role == "system"
    assert FACT in recorded.messages[0].content


def test_rag_alias_uses_default_collection_and_streams_sources_first(
    rig: tuple[str, Services, FakeGenerator],
) -> None:
    url, _, _ = rig
    stream = client(url).chat.completions.create(
        model="rag",
        messages=[{"role": "user", "content": "What soup is served on Tuesdays?"}],
        stream=True,
    )
    chunks = list(stream)
    first = chunks[0].model_extra or {}
    assert first["sources"][0]["doc_id"] == "food"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_empty_collection_says_so(rig: tuple[str, Services, FakeGenerator]) -> None:
    url, services, _ = rig
    body = {"collection": "empty", "documents": [{"id": "tmp", "text": "x"}]}
    httpx.post(f"{url}/v1/index", json=body, timeout=60)
    assert httpx.delete(f"{url}/v1/collections/empty/documents/tmp").status_code == 200
    assert httpx.get(f"{url}/v1/collections/empty").json()["documents"] == 0
    r = httpx.post(
        f"{url}/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": "Anything?"}],
            "rag": {"collection": "empty"},
        },
        timeout=60,
    )
    assert r.status_code == 200 and r.json()["sources"] == []
    assert services.chat is not None
    assert NO_CONTEXT in services.chat.recorded[-1].messages[0].content


def test_rag_errors_name_the_rag_field(rig: tuple[str, Services, FakeGenerator]) -> None:
    url, _, _ = rig
    msgs = [{"role": "user", "content": "q"}]
    r = httpx.post(
        f"{url}/v1/chat/completions",
        json={"messages": msgs, "rag": {"collection": "nope"}},
        timeout=60,
    )
    assert r.status_code == 404 and r.json()["error"]["param"] == "rag.collection"
    r = httpx.post(
        f"{url}/v1/chat/completions",
        json={"messages": msgs, "rag": {"filter": {"team": {"bad": 1}}}},
        timeout=60,
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "rag.filter"
    r = httpx.post(
        f"{url}/v1/chat/completions",
        json={"messages": msgs, "rag": {"collection": "kb", "top_k": 0}},
        timeout=60,
    )
    assert r.status_code == 400


def test_plain_model_name_is_plain_chat(rig: tuple[str, Services, FakeGenerator]) -> None:
    url, _, generator = rig
    r = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "fake-chat", "messages": [{"role": "user", "content": "Bluefin?"}]},
        timeout=60,
    )
    assert r.status_code == 200 and "sources" not in r.json()
    assert "amber-falcon-17" not in generator.decode(generator.prompts[-1])


def sample(metrics: str, name: str) -> float:
    """The value of an unlabelled sample in Prometheus text, 0 when absent."""
    for line in metrics.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return 0.0


def test_metrics_show_retrieval_and_time_to_first_token(
    rig: tuple[str, Services, FakeGenerator],
) -> None:
    url, _, _ = rig
    before = httpx.get(f"{url}/metrics").text
    for stream in (False, True):
        client(url).chat.completions.create(
            model="rag", messages=[{"role": "user", "content": "Bluefin code?"}], stream=stream
        )
    httpx.post(f"{url}/v1/search", json={"collection": "kb", "query": "soup"}, timeout=60)
    after = httpx.get(f"{url}/metrics").text
    for name, added in (
        ("rag_retrieval_seconds_count", 3),  # two chats and one search
        ("rag_chat_time_to_first_token_seconds_count", 2),
    ):
        assert sample(after, name) - sample(before, name) == added, name
    assert sample(after, "rag_retrieval_seconds_sum") > 0
    assert (
        'rag_http_requests_total{method="POST",route="/v1/chat/completions",status="200"}' in after
    )


def test_the_retrieval_report_says_what_happened(rig: tuple[str, Services, FakeGenerator]) -> None:
    url, _, _ = rig
    body = {
        "model": "rag",
        "messages": [
            {"role": "user", "content": "Tell me about project Bluefin."},
            {"role": "assistant", "content": "It has a launch code [1]."},
            {"role": "user", "content": "What is it?"},
        ],
    }
    r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    report = r.json()["retrieval"]
    # the follow-up was searched with the earlier question, and found the fact
    assert report["query"] == "What is it?\nTell me about project Bluefin.\nWhat is it?"
    assert r.json()["sources"][0]["doc_id"] == "bluefin"
    assert report["collection"] == "kb" and report["passages_found"] == 2
    assert report["passages_used"] == 2 and report["messages_dropped"] == 0
    assert report["notice"] is None
    empty = httpx.post(
        f"{url}/v1/chat/completions",
        json={**body, "rag": {"collection": "kb", "filter": {"team": "nobody"}}},
        timeout=60,
    ).json()["retrieval"]
    assert empty["passages_found"] == 0 and "No passages" in empty["notice"]
