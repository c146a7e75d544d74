"""Citation markers, sentences, attribution and annotations (a bag-of-words embedder)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from rag_appliance.app import create_app
from rag_appliance.chat.citations import (
    Attributed,
    Attributor,
    CitedSource,
    MarkerFilter,
    content_words,
    markers,
    sentence_spans,
    validate_markers,
)
from rag_appliance.errors import Overloaded
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.conftest import make_services, make_settings
from tests.fakes import FakeEncoder, FakeGenerator
from tests.unit.chat.test_router import events

SOURCES = [
    CitedSource(1, "The access code of the Osk observatory is heron-4471.", "Osk", "/d/osk"),
    CitedSource(2, "The cafeteria serves lentil soup every Tuesday.", "Menu", "/d/menu"),
]


async def bag_of_words(texts: list[str]) -> np.ndarray:
    """Unit vectors of hashed content words: cosine follows shared words (deterministic)."""
    out = np.zeros((len(texts), 64), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in content_words(text):
            out[row, sum(map(ord, word)) % 64] += 1
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1, norms)


def attribute(text: str, append: bool = False) -> Attributed:
    return asyncio.run(Attributor(bag_of_words).attribute(text, SOURCES, append=append))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Blue [1].", "Blue [1]."),
        ("Blue [7].", "Blue."),
        ("Blue [0] and red [2].", "Blue and red [2]."),
        ("Blue [1, 7] and [2, 3].", "Blue [1] and [2]."),
        ("Blue [1][7][2].", "Blue [1][2]."),
        ("In [2024] and [x] and [1-2] stay.", "In [2024] and [x] and [1-2] stay."),
    ],
)
def test_invalid_markers_are_removed(text: str, expected: str) -> None:
    assert validate_markers(text, 2) == expected


def test_markers_with_offsets() -> None:
    text = "A [1]. B [2, 1]."
    assert [(n, text[i]) for n, i in markers(text)] == [(1, "["), (2, "["), (1, "[")]


def test_sentences_keep_abbreviations_decimals_and_markers_together() -> None:
    text = (
        "Bring tools, e.g. a hammer. It costs 3.5 crowns! Dr. Smith agrees. [2] Really?\n"
        "1. First step\n2. Second step"
    )
    spans = [text[a:b] for a, b in sentence_spans(text)]
    assert spans == [
        "Bring tools, e.g. a hammer.",
        "It costs 3.5 crowns!",
        "Dr. Smith agrees. [2]",
        "Really?",
        "1. First step",
        "2. Second step",
    ]


def test_a_line_of_markers_cites_the_sentence_before() -> None:
    text = "The code is heron-4471.\n[1]"
    assert [text[a:b] for a, b in sentence_spans(text)] == [text]


def test_model_markers_are_kept_and_annotated() -> None:
    text = "The code is heron-4471 [1]. Soup is served on Tuesday [9]."
    result = attribute(text)
    assert result.text == "The code is heron-4471 [1]. Soup is served on Tuesday."
    assert result.cited == [1]
    (note,) = result.annotations
    cite = note["url_citation"]
    assert note["type"] == "url_citation" and cite["url"] == "/d/osk" and cite["title"] == "Osk"
    assert result.text[cite["start_index"] : cite["end_index"]] == "The code is heron-4471 [1]."


def test_unmarked_answer_is_attributed_inline_before_the_full_stop() -> None:
    text = "The observatory access code is heron-4471. Cats purr loudly. Lentil soup on Tuesday!"
    result = attribute(text)
    assert result.text == (
        "The observatory access code is heron-4471 [1]. Cats purr loudly. "
        "Lentil soup on Tuesday [2]!"
    )
    assert result.cited == [1, 2]
    spans = [
        result.text[a["url_citation"]["start_index"] : a["url_citation"]["end_index"]]
        for a in result.annotations
    ]
    assert spans == [
        "The observatory access code is heron-4471 [1].",
        "Lentil soup on Tuesday [2]!",
    ]


def test_streamed_answer_gets_markers_appended() -> None:
    text = "The observatory access code is heron-4471. Lentil soup on Tuesday."
    result = attribute(text, append=True)
    assert result.text == text + " [1][2]"
    spans = [
        result.text[a["url_citation"]["start_index"] : a["url_citation"]["end_index"]]
        for a in result.annotations
    ]
    assert spans == ["The observatory access code is heron-4471.", "Lentil soup on Tuesday."]


def test_unsupported_answer_stays_unmarked() -> None:
    text = "Cats purr loudly. The weather in Paris is mild."
    result = attribute(text)
    assert result.text == text and result.annotations == [] and result.cited == []


def test_embedder_refusal_leaves_the_answer_alone() -> None:
    async def busy(texts: list[str]) -> np.ndarray:
        raise Overloaded("busy")

    text = "The observatory access code is heron-4471."
    result = asyncio.run(Attributor(busy).attribute(text, SOURCES))
    assert result.text == text and result.annotations == []


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_stream_filter_equals_whole_text_validation(size: int) -> None:
    text = "Blue [7]. Red [1 , 3] and [2][9] then [x] x [ 1] ok [12] end [2"
    f = MarkerFilter(2)
    sent = [f.feed(text[i : i + size]) for i in range(0, len(text), size)]
    assert "".join(sent) + f.flush() == validate_markers(text, 2)
    assert not any(re.search(r"\[(7|9|12|3)\]", s) for s in sent)


def test_stream_filter_releases_plain_text_at_once() -> None:
    f = MarkerFilter(2)
    assert f.feed("Hello") == "Hello"
    assert f.feed(" there [") == " there"
    assert f.feed("2] and") == " [2] and"


# Through the route: a fake generator, the fake embedder for retrieval, a real embedded store,
# and the bag-of-words embedder for attribution.

ANSWER = "The observatory access code is heron-4471 [7]. Cats purr loudly."
DOCS = [
    {"id": "osk", "text": SOURCES[0].text, "metadata": {"title": "Osk"}},
    {"id": "menu", "text": SOURCES[1].text},
]


@pytest.fixture
def rag_client(
    tmp_path: Path, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, FakeGenerator]]:
    monkeypatch.setattr("rag_appliance.chat.service.embedder", lambda service: bag_of_words)
    settings = make_settings(rag={"default_collection": "kb"})
    generator = FakeGenerator(ANSWER, max_model_len=2048)
    store = QdrantEdgeStore(tmp_path / "db")
    services = make_services(settings, FakeEncoder(), store, generator, tokenizer=tokenizer)
    with TestClient(create_app(settings, services)) as c:
        assert c.post("/v1/index", json={"collection": "kb", "documents": DOCS}).is_success
        yield c, generator


def ask(client: TestClient, **body: Any) -> Any:
    messages = [{"role": "user", "content": "What is the observatory's access code?"}]
    return client.post("/v1/chat/completions", json={"model": "rag", "messages": messages, **body})


def spans(content: str, annotations: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (
            a["url_citation"]["url"],
            content[a["url_citation"]["start_index"] : a["url_citation"]["end_index"]],
        )
        for a in annotations
    ]


def test_route_attributes_and_annotates(rag_client: tuple[TestClient, FakeGenerator]) -> None:
    client, _ = rag_client
    body = ask(client).json()
    message = body["choices"][0]["message"]
    assert message["content"] == "The observatory access code is heron-4471 [1]. Cats purr loudly."
    assert spans(message["content"], message["annotations"]) == [
        ("http://testserver/v1/collections/kb/documents/osk", message["content"][:46])
    ]
    assert message["annotations"][0]["url_citation"]["title"] == "Osk"
    assert body["sources"][0]["doc_id"] == "osk"


def test_streamed_route_never_sends_a_bad_marker(
    rag_client: tuple[TestClient, FakeGenerator],
) -> None:
    client, _ = rag_client
    r = ask(client, stream=True)
    chunks = [c for c in events(r) if c != "[DONE]"]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    content = "".join(d.get("content") or "" for d in deltas)
    assert "[7]" not in content and all("[7" not in (d.get("content") or "") for d in deltas)
    assert content == "The observatory access code is heron-4471. Cats purr loudly. [1]"
    (closing,) = [d for d in deltas if "annotations" in d]
    assert closing["content"] == " [1]" and deltas[-1] == {}
    assert spans(content, closing["annotations"]) == [
        (
            "http://testserver/v1/collections/kb/documents/osk",
            "The observatory access code is heron-4471.",
        )
    ]


def test_model_markers_are_kept(rag_client: tuple[TestClient, FakeGenerator]) -> None:
    client, generator = rag_client
    generator.reply = "Soup is lentil [2]. The code is heron-4471 [1][5]."
    message = ask(client).json()["choices"][0]["message"]
    assert message["content"] == "Soup is lentil [2]. The code is heron-4471 [1]."
    assert [
        url.rsplit("/", 1)[1] for url, _ in spans(message["content"], message["annotations"])
    ] == [
        "menu",
        "osk",
    ]


def test_plain_chat_is_left_alone(rag_client: tuple[TestClient, FakeGenerator]) -> None:
    client, _ = rag_client
    messages = [{"role": "user", "content": "Hi"}]
    r = client.post("/v1/chat/completions", json={"model": "fake-chat", "messages": messages})
    message = r.json()["choices"][0]["message"]
    assert message["content"] == ANSWER and "annotations" not in message


def test_rag_sampling_defaults_apply_only_when_unset(
    rag_client: tuple[TestClient, FakeGenerator],
) -> None:
    client, generator = rag_client
    ask(client)
    defaults = generator.sampling[-1]
    ask(client, repetition_penalty=1.0, frequency_penalty=0.0)
    sent = generator.sampling[-1]
    assert (sent.repetition_penalty, sent.frequency_penalty) == (1.0, 0.0)
    settings = make_settings().generation
    assert defaults.repetition_penalty == settings.rag_repetition_penalty
    assert defaults.frequency_penalty == settings.rag_frequency_penalty


def test_a_looping_answer_stops_with_a_reason(
    rag_client: tuple[TestClient, FakeGenerator],
) -> None:
    client, generator = rag_client
    generator.reply = "Soup is lentil. " + "The code is heron-4471. " * 20
    choice = ask(client).json()["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["stop_reason"] == "repetition"
    assert choice["message"]["content"].count("heron-4471") == 2
    chunks = [c for c in events(ask(client, stream=True)) if c != "[DONE]"]
    finish = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [(f["finish_reason"], f.get("stop_reason")) for f in finish] == [("stop", "repetition")]
