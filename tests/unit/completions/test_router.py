"""/v1/completions with a fake generator: legacy shapes, streaming, refusals, RAG citations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rag_appliance.app import create_app
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.conftest import make_services, make_settings
from tests.fakes import FakeEncoder, FakeGenerator
from tests.unit.chat.test_citations import DOCS, bag_of_words
from tests.unit.chat.test_router import events

REPLY = "The observatory access code is heron-4471. Cats purr loudly."


@pytest.fixture
def plain() -> Iterator[tuple[TestClient, FakeGenerator]]:
    settings = make_settings()
    generator = FakeGenerator(REPLY)
    services = make_services(settings, FakeEncoder(), generator=generator)
    with TestClient(create_app(settings, services)) as c:
        yield c, generator


def complete(client: TestClient, **body: Any) -> Any:
    return client.post("/v1/completions", json={"model": "fake-chat", "prompt": "Once", **body})


def test_plain_completion_shape(plain: tuple[TestClient, FakeGenerator]) -> None:
    client, generator = plain
    r = complete(client, prompt="Once upon a time", max_tokens=4)
    body = r.json()
    assert r.status_code == 200, r.text
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert body["choices"] == [
        {
            "text": "The observatory access code",
            "index": 0,
            "logprobs": None,
            "finish_reason": "length",
        }
    ]
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}
    assert generator.decode(generator.prompts[-1]) == "Once upon a time"  # no chat template
    assert "sources" not in body


@pytest.mark.parametrize("prompt", [["Once upon"], [5, 6], [[5, 6]]])
def test_prompt_forms(plain: tuple[TestClient, FakeGenerator], prompt: Any) -> None:
    client, generator = plain
    assert complete(client, prompt=prompt).status_code == 200
    assert len(generator.prompts[-1]) == 2


def test_streamed_completion_with_usage(plain: tuple[TestClient, FakeGenerator]) -> None:
    client, _ = plain
    r = complete(client, stream=True, stream_options={"include_usage": True})
    chunks = events(r)
    assert chunks[-1] == "[DONE]"
    body = chunks[:-1]
    assert all(c["object"] == "text_completion" for c in body)
    text = "".join(c["choices"][0]["text"] for c in body if c["choices"])
    assert text == REPLY
    assert body[-2]["choices"][0]["finish_reason"] == "stop"
    assert body[-1]["choices"] == [] and body[-1]["usage"]["completion_tokens"] == 9


def test_legacy_logprobs(plain: tuple[TestClient, FakeGenerator]) -> None:
    client, _ = plain
    choice = complete(client, max_tokens=3, logprobs=2).json()["choices"][0]
    lp = choice["logprobs"]
    assert lp["tokens"] == ["The", "observatory", "access"]
    assert lp["token_logprobs"] == [-1.0, -1.0, -1.0]
    assert lp["top_logprobs"][0] == {"The~1": -1.0, "The~2": -2.0}
    assert lp["text_offset"] == [0, 3, 14]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"echo": True}, "echo"),
        ({"suffix": "end"}, "suffix"),
        ({"best_of": 2}, "best_of"),
        ({"n": 2}, "n"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": [10**9]}, "prompt"),
        ({"logprobs": 6}, "logprobs"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"max_tokens": 10_000}, "prompt"),
        ({"tools": []}, "tools"),
        ({"model": "gpt-3.5-turbo-instruct"}, "model"),
    ],
)
def test_refusals_name_the_parameter(
    plain: tuple[TestClient, FakeGenerator], body: dict[str, Any], param: str
) -> None:
    client, _ = plain
    r = complete(client, **body)
    error = r.json()["error"]
    assert r.status_code in (400, 404) and error["param"] == param, r.text
    assert set(error) == {"message", "type", "param", "code"}


def test_a_looping_completion_stops(plain: tuple[TestClient, FakeGenerator]) -> None:
    client, generator = plain
    generator.reply = "and then " * 30
    choice = complete(client).json()["choices"][0]
    assert (choice["finish_reason"], choice["stop_reason"]) == ("stop", "repetition")


@pytest.fixture
def rag(
    tmp_path: Path, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, FakeGenerator]]:
    monkeypatch.setattr("rag_appliance.chat.service.embedder", lambda service: bag_of_words)
    settings = make_settings(rag={"default_collection": "kb"})
    generator = FakeGenerator(REPLY, max_model_len=2048)
    store = QdrantEdgeStore(tmp_path / "db")
    services = make_services(settings, FakeEncoder(), store, generator, tokenizer=tokenizer)
    with TestClient(create_app(settings, services)) as c:
        assert c.post("/v1/index", json={"collection": "kb", "documents": DOCS}).is_success
        yield c, generator


def test_rag_completion_cites(rag: tuple[TestClient, FakeGenerator]) -> None:
    client, generator = rag
    body = complete(client, model="rag", prompt="What is the observatory's code?").json()
    choice = body["choices"][0]
    assert choice["text"] == "The observatory access code is heron-4471 [1]. Cats purr loudly."
    (note,) = choice["annotations"]
    cite = note["url_citation"]
    assert cite["url"] == "http://testserver/v1/collections/kb/documents/osk"
    assert choice["text"][cite["start_index"] : cite["end_index"]].endswith("heron-4471 [1].")
    assert body["sources"][0]["doc_id"] == "osk"
    assert "Cite" in generator.decode(generator.prompts[-1])  # the chat prompt, with passages


def test_streamed_rag_completion_appends_markers(rag: tuple[TestClient, FakeGenerator]) -> None:
    client, _ = rag
    r = complete(client, model="rag", prompt="What is the observatory's code?", stream=True)
    chunks = [c for c in events(r) if c != "[DONE]"]
    assert chunks[0]["sources"][0]["doc_id"] == "osk"
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert text == REPLY + " [1]"
    (closing,) = [c["choices"][0] for c in chunks if "annotations" in c["choices"][0]]
    cite = closing["annotations"][0]["url_citation"]
    assert (
        text[cite["start_index"] : cite["end_index"]]
        == "The observatory access code is heron-4471."
    )


def test_rag_completion_refuses_token_ids(rag: tuple[TestClient, FakeGenerator]) -> None:
    client, _ = rag
    r = complete(client, model="rag", prompt=[1, 2, 3])
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
