"""Citations, the loop guard and /v1/completions with the real bundled model (one engine).

The documents hold invented facts, so an answer citing them can only have come from them.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from rag_appliance.chat.loopguard import ngram_counts
from rag_appliance.embedding.encoder import Encoder
from rag_appliance.services import Services
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.conftest import live_server, make_services
from tests.integration.chat.test_vllm_chat import client, model_name, vllm_settings

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (make install adds it)"
)

DOCS = [
    ("zephyr", "Zephyr-9 battery", "The Zephyr-9 battery stores 14 kilowatt-hours and weighs "
     "112 kilograms. It must be charged at temperatures between 5 and 40 degrees Celsius. The "
     "warranty lasts eight years or 6,000 charge cycles, whichever comes first."),
    ("bluefin", "Project Bluefin", "Project Bluefin is a submarine cable between Port Ardis and "
     "the island of Vell. It was completed in 2019 at a cost of 84 million crowns. The cable "
     "carries 12 fibre pairs and is maintained by the Ardis Maritime Office."),
    ("varn", "Varn Island lighthouse", "The lighthouse keeper on Varn Island feeds eleven goats "
     "every morning at six. The lighthouse was automated in 1987 but a keeper still lives "
     "there. Its lamp flashes white twice every ten seconds."),
    ("osk", "Osk Valley Observatory", "The Osk Valley Observatory sits at 2,140 metres on the "
     "north ridge of Mount Teller. Its access code is heron-4471, changed every March. "
     "Visitors may enter only between 19:00 and 23:00, and the main telescope is a "
     "1.8-metre reflector named Galla."),
]  # fmt: skip
WEIGHT = "How heavy is the Zephyr-9 battery?"
# Questions the bundled model answered in loops at temperature 0 before the defaults and
# the guard (docs/chat.md), and plain ones.
QUESTIONS = [
    WEIGHT,
    "How long is the Zephyr-9 warranty?",
    "Tell me everything about the Varn Island lighthouse.",
    "Explain in detail how the Zephyr-9 battery should be charged and what the warranty covers.",
    "Describe the Osk Valley Observatory and its telescope.",
    "How much did Project Bluefin cost?",
]
MARKER = re.compile(r"\[(\d+)\]")


@pytest.fixture(scope="module")
def server(
    encoder: Encoder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Services]]:
    from rag_appliance.generation.vllm_engine import VllmGenerator

    settings = vllm_settings()
    data = tmp_path_factory.mktemp("citations")
    generator = VllmGenerator(settings.generation, data)
    services = make_services(settings, encoder, QdrantEdgeStore(data / "db"), generator)
    with live_server(settings, encoder, services=services) as url:
        docs = [{"id": i, "text": t, "metadata": {"title": title}} for i, title, t in DOCS]
        r = httpx.post(f"{url}/v1/index", json={"collection": "kb", "documents": docs}, timeout=120)
        assert r.status_code == 200, r.text
        yield url, services


def cited_docs(content: str, sources: list[dict[str, Any]]) -> list[str]:
    """The documents the content's markers name; every marker must name a source."""
    numbers = [int(n) for n in MARKER.findall(content)]
    assert all(1 <= n <= len(sources) for n in numbers), (content, len(sources))
    return [sources[n - 1]["doc_id"] for n in numbers]


def check_annotations(url: str, content: str, annotations: list[dict[str, Any]]) -> list[str]:
    """Annotation spans lie in the content; returns the cited document ids."""
    docs = []
    for note in annotations:
        cite = note["url_citation"]
        assert note["type"] == "url_citation"
        assert cite["url"].startswith(f"{url}/v1/collections/kb/documents/")
        assert 0 <= cite["start_index"] < cite["end_index"] <= len(content)
        assert content[cite["start_index"] : cite["end_index"]].strip()
        docs.append(cite["url"].rsplit("/", 1)[1])
    return docs


def test_rag_answer_cites_the_right_document(server: tuple[str, Services]) -> None:
    url, _ = server
    r = client(url).chat.completions.create(
        model="rag", messages=[{"role": "user", "content": WEIGHT}], temperature=0
    )
    content = r.choices[0].message.content or ""
    sources = (r.model_extra or {})["sources"]
    assert "zephyr" in cited_docs(content, sources), content
    annotations = (r.choices[0].message.model_extra or {}).get("annotations")
    if annotations is None:  # an openai client that models them
        annotations = [a.model_dump() for a in r.choices[0].message.annotations or []]
    assert "zephyr" in check_annotations(url, content, annotations)
    title = {a["url_citation"]["title"] for a in annotations}
    assert "Zephyr-9 battery" in title


def test_streamed_rag_answer_cites_without_bad_markers(server: tuple[str, Services]) -> None:
    url, _ = server
    stream = client(url).chat.completions.create(
        model="rag", messages=[{"role": "user", "content": WEIGHT}], temperature=0, stream=True
    )
    chunks = list(stream)
    sources = (chunks[0].model_extra or {})["sources"]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    pieces = [d.content or "" for d in deltas]
    content = "".join(pieces)
    for piece in pieces:  # no marker that names no passage ever went out
        assert all(1 <= int(n) <= len(sources) for n in MARKER.findall(piece)), piece
    assert "zephyr" in cited_docs(content, sources), content
    annotations = [a for d in deltas for a in (d.model_extra or {}).get("annotations") or []]
    assert "zephyr" in check_annotations(url, content, annotations)


def test_no_loops_at_temperature_zero(server: tuple[str, Services]) -> None:
    url, _ = server
    for question in QUESTIONS:
        body = {"model": "rag", "messages": [{"role": "user", "content": question}]}
        r = httpx.post(f"{url}/v1/chat/completions", json=body | {"temperature": 0}, timeout=600)
        choice = r.json()["choices"][0]
        text = choice["message"]["content"]
        worst = max(ngram_counts(text).values(), default=0)
        assert worst <= 3, (question, text)
        assert choice["finish_reason"] in ("stop", "length")


def test_completions_plain_and_streamed(server: tuple[str, Services]) -> None:
    url, _ = server
    c = client(url)
    prompt = "The three primary colours are"
    r = c.completions.create(model=model_name(url), prompt=prompt, max_tokens=12, temperature=0)
    text = r.choices[0].text
    assert (
        text and r.choices[0].finish_reason in ("stop", "length") and r.object == "text_completion"
    )
    assert r.usage is not None and 0 < r.usage.completion_tokens <= 12
    stream = c.completions.create(
        model=model_name(url),
        prompt=prompt,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == text  # greedy
    assert (
        chunks[-1].usage is not None
        and chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    )
    with pytest.raises(openai.BadRequestError) as info:
        c.completions.create(model=model_name(url), prompt=prompt, echo=True)
    assert info.value.param == "echo"


def test_completions_with_the_rag_model_cite(server: tuple[str, Services]) -> None:
    url, _ = server
    r = client(url).completions.create(model="rag", prompt=WEIGHT, temperature=0)
    text = r.choices[0].text
    assert "zephyr" in cited_docs(text, (r.model_extra or {})["sources"]), text
    annotations = (r.choices[0].model_extra or {})["annotations"]
    assert "zephyr" in check_annotations(url, text, annotations)


def test_langchain_chat_openai_keeps_the_markers(server: tuple[str, Services]) -> None:
    from langchain_openai import ChatOpenAI

    url, _ = server
    llm = ChatOpenAI(model="rag", temperature=0, base_url=f"{url}/v1", api_key="unused")
    reply = llm.invoke(WEIGHT)
    assert isinstance(reply.content, str) and MARKER.search(reply.content), reply.content
    streamed = "".join(str(chunk.content) for chunk in llm.stream(WEIGHT))
    assert MARKER.search(streamed), streamed


def test_llamaindex_openai_like_keeps_the_markers(server: tuple[str, Services]) -> None:
    openai_like = pytest.importorskip("llama_index.llms.openai_like")

    url, _ = server
    # Default settings: not a chat model, so LlamaIndex calls /v1/completions.
    llm = openai_like.OpenAILike(model="rag", api_base=f"{url}/v1", api_key="unused")
    reply = llm.complete(WEIGHT)
    assert MARKER.search(reply.text), reply.text
    raw = reply.raw if isinstance(reply.raw, dict) else reply.raw.model_dump()
    assert raw["choices"][0]["annotations"], raw
    pieces = list(llm.stream_complete(WEIGHT))
    assert pieces and MARKER.search(pieces[-1].text), pieces[-1:]  # the text so far
