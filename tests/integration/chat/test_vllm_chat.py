"""Chat through the official openai client against the real vLLM engine and bundled model."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from rag_appliance.embedding.encoder import Encoder
from rag_appliance.services import Services
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.conftest import live_server, make_services, make_settings

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (make install adds it)"
)

ROOT = Path(__file__).resolve().parents[3]
MODEL_CACHE = ROOT / "test-output" / "models"  # the bundled model is prepared once per machine
FACT = "The access code for the Osk valley observatory is heron-4471."


def vllm_settings(**generation: Any) -> Any:
    return make_settings(
        generation={
            "enabled": True,
            "model_cache_dir": MODEL_CACHE,
            "record_prompts": 10,
            "max_model_len": 2048,
            **generation,
        },
        rag={"default_collection": "kb"},
    )


@pytest.fixture(scope="module")
def server(
    encoder: Encoder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Services]]:
    from rag_appliance.generation.vllm_engine import VllmGenerator

    settings = vllm_settings()
    data = tmp_path_factory.mktemp("chat")
    generator = VllmGenerator(settings.generation, data)
    services = make_services(settings, encoder, QdrantEdgeStore(data / "db"), generator)
    with live_server(settings, encoder, services=services) as url:
        docs = [
            {"id": "observatory", "text": FACT, "metadata": {"site": "osk"}},
            {"id": "soup", "text": "The cafeteria serves lentil soup every Tuesday."},
        ]
        r = httpx.post(f"{url}/v1/index", json={"collection": "kb", "documents": docs}, timeout=120)
        assert r.status_code == 200, r.text
        yield url, services


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)


def model_name(url: str) -> str:
    return str(httpx.get(f"{url}/ready").json()["generator"]["model"])


def test_non_streamed_chat_with_usage(server: tuple[str, Services]) -> None:
    url, _ = server

    def ask() -> Any:
        return client(url).chat.completions.create(
            model=model_name(url),
            messages=[
                {"role": "system", "content": "You are concise."},
                {"role": "user", "content": "Name a primary colour."},
            ],
            max_tokens=12,
            temperature=0,
        )

    r = ask()
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage is not None and r.usage.prompt_tokens > 10
    assert 0 < r.usage.completion_tokens <= 12
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert ask().choices[0].message.content == r.choices[0].message.content  # greedy


def test_streamed_chat_and_length_finish(server: tuple[str, Services]) -> None:
    url, _ = server
    stream = client(url).chat.completions.create(
        model=model_name(url),
        messages=[{"role": "user", "content": "Count from one to fifty in words."}],
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert text and finishes == ["length"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8


def test_stop_sequence(server: tuple[str, Services]) -> None:
    url, _ = server
    prompt = "Count from one to ten in digits, separated by commas."
    messages: list[Any] = [{"role": "user", "content": prompt}]
    full = (
        client(url)
        .chat.completions.create(
            model=model_name(url), messages=messages, max_tokens=40, temperature=0
        )
        .choices[0]
        .message.content
        or ""
    )
    assert "3" in full, full
    cut = client(url).chat.completions.create(
        model=model_name(url), messages=messages, max_tokens=40, temperature=0, stop=["3"]
    )
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == full[: full.index("3")]


def test_rag_sources_and_engine_prompt(server: tuple[str, Services]) -> None:
    url, services = server
    r = client(url).chat.completions.create(
        model=model_name(url),
        messages=[{"role": "user", "content": "What is the access code for the Osk observatory?"}],
        max_tokens=40,
        temperature=0,
        extra_body={"rag": {"collection": "kb", "top_k": 2}},
    )
    sources = (r.model_extra or {})["sources"]
    assert sources[0]["doc_id"] == "observatory" and sources[0]["metadata"] == {"site": "osk"}
    assert services.chat is not None and services.generator is not None
    sent = services.generator.decode(services.chat.recorded[-1].prompt)
    assert "heron-4471" in sent and "[1]" in sent  # the chunk reached the engine, numbered


def test_rag_alias_and_empty_collection(server: tuple[str, Services]) -> None:
    url, services = server
    r = client(url).chat.completions.create(
        model="rag",
        messages=[{"role": "user", "content": "What soup is served on Tuesday?"}],
        max_tokens=20,
        temperature=0,
    )
    assert (r.model_extra or {})["sources"][0]["doc_id"] == "soup"
    httpx.post(
        f"{url}/v1/index",
        json={"collection": "empty", "documents": [{"id": "x", "text": "tmp"}]},
        timeout=60,
    )
    httpx.delete(f"{url}/v1/collections/empty/documents/x", timeout=60)
    r = client(url).chat.completions.create(
        model=model_name(url),
        messages=[{"role": "user", "content": "What is the code?"}],
        max_tokens=20,
        temperature=0,
        extra_body={"rag": {"collection": "empty"}},
    )
    assert (r.model_extra or {})["sources"] == []
    assert services.chat is not None and services.generator is not None
    sent = services.generator.decode(services.chat.recorded[-1].prompt)
    assert "no passages" in sent


def test_error_paths(server: tuple[str, Services]) -> None:
    url, _ = server
    c = client(url)
    with pytest.raises(openai.BadRequestError) as info:
        c.chat.completions.create(
            model=model_name(url), messages=[{"role": "user", "content": "hi " * 3000}]
        )
    assert info.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(
            model=model_name(url), n=2, messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])


def test_embeddings_are_not_starved_by_a_long_generation(server: tuple[str, Services]) -> None:
    url, _ = server

    async def run() -> tuple[list[float], list[float], float]:
        async with httpx.AsyncClient(base_url=url, timeout=300) as http:
            body = {"input": ["How long does it take to embed this sentence?"] * 8}
            idle: list[float] = []
            for _ in range(3):
                t = time.perf_counter()
                assert (await http.post("/v1/embeddings", json=body)).status_code == 200
                idle.append(time.perf_counter() - t)
            chat = asyncio.create_task(
                http.post(
                    "/v1/chat/completions",
                    json={
                        "messages": [
                            {"role": "user", "content": "Write a long story about a dragon."}
                        ],
                        "max_tokens": 300,
                        "temperature": 0.8,
                        "seed": 1,
                    },
                )
            )
            await asyncio.sleep(1.0)  # the generation is under way
            busy: list[float] = []
            while not chat.done() and len(busy) < 10:
                t = time.perf_counter()
                assert (await http.post("/v1/embeddings", json=body)).status_code == 200
                busy.append(time.perf_counter() - t)
            started = time.perf_counter()
            response = await chat
            assert response.status_code == 200
            return idle, busy, time.perf_counter() - started

    idle, busy, _ = asyncio.run(run())
    assert len(busy) >= 3, "embedding requests did not complete while the generation ran"
    assert statistics.median(busy) < 10 * statistics.median(idle) + 1.0, (idle, busy)


def test_generator_overload_is_429(encoder: Encoder, tmp_path: Path) -> None:
    from rag_appliance.generation.vllm_engine import VllmGenerator

    settings = vllm_settings(max_pending_requests=1)
    generator = VllmGenerator(settings.generation, tmp_path)
    with live_server(settings, encoder, generator=generator) as url:

        async def run() -> list[int]:
            async with httpx.AsyncClient(base_url=url, timeout=300) as http:
                body = {
                    "messages": [{"role": "user", "content": "Tell me a story."}],
                    "max_tokens": 64,
                }
                responses = await asyncio.gather(
                    *(http.post("/v1/chat/completions", json=body) for _ in range(4))
                )
                return [r.status_code for r in responses]

        statuses = asyncio.run(run())
    assert 429 in statuses and 200 in statuses, statuses


def test_chat_disabled_is_503_while_embeddings_work(encoder: Encoder) -> None:
    settings = make_settings(generation={"enabled": False})
    with live_server(settings, encoder) as url:
        with pytest.raises(openai.InternalServerError) as info:
            client(url).chat.completions.create(
                model="rag", messages=[{"role": "user", "content": "hi"}]
            )
        assert info.value.status_code == 503
        assert client(url).embeddings.create(model="all-MiniLM-L6-v2", input="ok").data


def test_langchain_chat_openai(server: tuple[str, Services]) -> None:
    from langchain_openai import ChatOpenAI

    url, _ = server
    options: dict[str, Any] = {"base_url": f"{url}/v1", "api_key": "unused"}
    llm = ChatOpenAI(model="rag", temperature=0, max_tokens=24, **options)
    reply = llm.invoke("What is the access code for the Osk observatory?")
    assert isinstance(reply.content, str) and reply.content
    chunks = list(llm.stream("Name one colour."))
    assert "".join(str(c.content) for c in chunks)


CAT: list[Any] = [
    {"role": "user", "content": "Describe a cat as a JSON object with keys name and color."}
]


def test_frequency_penalty_changes_a_greedy_answer(server: tuple[str, Services]) -> None:
    url, _ = server

    def ask(**extra: Any) -> str:
        r = client(url).chat.completions.create(
            model=model_name(url), messages=CAT, max_tokens=60, temperature=0, **extra
        )
        return r.choices[0].message.content or ""

    plain = ask()
    assert plain == ask()  # greedy: the same answer twice
    assert ask(frequency_penalty=1.5) != plain
    assert ask(extra_body={"repetition_penalty": 1.3}) != plain


def test_json_object_response_format_is_parseable(server: tuple[str, Services]) -> None:
    url, _ = server
    r = client(url).chat.completions.create(
        model=model_name(url),
        messages=CAT,
        max_tokens=120,
        temperature=0,
        response_format={"type": "json_object"},
    )
    content = r.choices[0].message.content or ""
    assert r.choices[0].finish_reason == "stop", content
    assert isinstance(json.loads(content), dict), content


def test_json_schema_response_format_holds_the_schema(server: tuple[str, Services]) -> None:
    url, _ = server
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "color": {"type": "string"}},
        "required": ["name", "color"],
        "additionalProperties": False,
    }
    r = client(url).chat.completions.create(
        model=model_name(url),
        messages=CAT,
        max_tokens=120,
        temperature=0.7,
        seed=3,
        response_format={"type": "json_schema", "json_schema": {"name": "cat", "schema": schema}},
    )
    value = json.loads(r.choices[0].message.content or "")
    assert set(value) == {"name", "color"} and all(isinstance(v, str) for v in value.values())


def test_logprobs_from_the_engine(server: tuple[str, Services]) -> None:
    url, _ = server
    r = client(url).chat.completions.create(
        model=model_name(url),
        messages=[{"role": "user", "content": "Name a primary colour."}],
        max_tokens=8,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
    )
    assert r.choices[0].logprobs is not None and r.usage is not None
    tokens = r.choices[0].logprobs.content or []
    assert len(tokens) == r.usage.completion_tokens
    assert "".join(t.token for t in tokens) == r.choices[0].message.content
    for t in tokens:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3
        # Greedy: the chosen token is the most likely one, up to a float near-tie (the CPU
        # kernels compute the sampled logits and the reported logprobs in separate passes).
        assert t.top_logprobs[0].token == t.token or (
            t.top_logprobs[0].logprob - t.logprob < 0.05
        ), (t.token, t.logprob, [(c.token, c.logprob) for c in t.top_logprobs])
        assert t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob


def test_unsupported_parameters_through_the_openai_client(server: tuple[str, Services]) -> None:
    url, _ = server
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as info:
        client(url).chat.completions.create(
            model=model_name(url),
            messages=CAT,
            tools=[tool],  # type: ignore[list-item]
        )
    assert info.value.code == "unsupported_parameter" and info.value.param == "tools"
    with pytest.raises(openai.BadRequestError) as info:
        client(url).chat.completions.create(model=model_name(url), messages=CAT, n=2)
    assert info.value.param == "n"
