"""/v1/chat/completions with a fake generator: shapes, streaming, limits and errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rag_appliance.app import create_app
from tests.conftest import make_services, make_settings
from tests.fakes import FakeEncoder, FakeGenerator


def client_for(generator: FakeGenerator | None = None, **sections: dict[str, Any]) -> TestClient:
    settings = make_settings(**sections)
    services = make_services(settings, FakeEncoder(), generator=generator or FakeGenerator())
    return TestClient(create_app(settings, services))


def events(response: Any) -> list[Any]:
    out = []
    for line in response.text.splitlines():
        if line.startswith("data: "):
            payload = line.removeprefix("data: ")
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]


def test_non_streamed_completion() -> None:
    with client_for() as c:
        r = c.post("/v1/chat/completions", json={"model": "fake-chat", "messages": MESSAGES})
        body = r.json()
    assert r.status_code == 200, r.text
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": "The answer is forty two [1].",
        "refusal": None,
    }
    assert choice["logprobs"] is None
    assert choice["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 6
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 6
    assert "sources" not in body


def test_streamed_completion_with_usage() -> None:
    with client_for() as c:
        r = c.post(
            "/v1/chat/completions",
            json={
                "messages": MESSAGES,
                "stream": True,
                "stream_options": {"include_usage": True},
                "max_tokens": 3,
            },
        )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    chunks = events(r)
    assert chunks[-1] == "[DONE]"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-2])
    assert text == "The answer is"
    assert chunks[-3]["choices"][0]["finish_reason"] == "length"
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"]["completion_tokens"] == 3


def test_text_parts_and_developer_role() -> None:
    gen = FakeGenerator()
    with client_for(gen) as c:
        msgs = [
            {"role": "developer", "content": "Rules."},
            {"role": "user", "content": [{"type": "text", "text": "Part one."}]},
        ]
        assert c.post("/v1/chat/completions", json={"messages": msgs}).status_code == 200
    words = {v: k for k, v in gen.vocab.items()}
    rendered = " ".join(words.get(i, "") for i in gen.prompts[0])
    assert "system: Rules." in rendered and "user: Part one." in rendered


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"messages": []}, 400, "messages"),
        ({"messages": MESSAGES, "n": 2}, 400, "n"),
        ({"messages": MESSAGES, "model": "gpt-4o"}, 404, "model"),
        ({"messages": MESSAGES, "model": "fake-model"}, 404, "model"),  # the embedding model
        ({"messages": MESSAGES, "temperature": 3}, 400, "temperature"),
        ({"messages": [{"role": "tool", "content": "x"}]}, 400, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            400,
            "messages[0].content[0].type",
        ),
        ({"messages": MESSAGES, "max_tokens": 10_000}, 400, "messages"),
        ({"messages": MESSAGES, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
        ({"messages": MESSAGES, "rag": {"collection": "kb"}}, 503, None),  # no store configured
        ({"messages": MESSAGES, "model": "rag"}, 400, "model"),  # no default collection
    ],
)
def test_bad_chat_requests(body: dict[str, Any], status: int, param: str | None) -> None:
    with client_for() as c:
        r = c.post("/v1/chat/completions", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if param:
        assert error["param"] == param


def test_context_length_exceeded_code() -> None:
    long = [{"role": "user", "content": "word " * 300}]
    with client_for(FakeGenerator(max_model_len=128)) as c:
        r = c.post("/v1/chat/completions", json={"messages": long})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


def test_overload_is_429_before_streaming() -> None:
    with client_for(FakeGenerator(overloaded=True)) as c:
        r = c.post("/v1/chat/completions", json={"messages": MESSAGES, "stream": True})
    assert r.status_code == 429 and r.headers["retry-after"] == "1"


def test_failure_mid_stream_sends_one_error_event() -> None:
    with client_for(FakeGenerator(fail_after=2)) as c:
        r = c.post("/v1/chat/completions", json={"messages": MESSAGES, "stream": True})
    chunks = events(r)
    assert "error" in chunks[-1] and "[DONE]" not in chunks
    assert chunks[-1]["error"]["type"] == "server_error"


def test_generator_disabled_is_503() -> None:
    settings = make_settings()
    with TestClient(create_app(settings, make_services(settings, FakeEncoder()))) as c:
        r = c.post("/v1/chat/completions", json={"messages": MESSAGES})
        assert r.status_code == 503 and "generation.enabled" in r.json()["error"]["message"]
        assert c.post("/v1/embeddings", json={"input": "still works"}).status_code == 200


def test_models_lists_chat_model_and_alias() -> None:
    with client_for() as c:
        ids = [m["id"] for m in c.get("/v1/models").json()["data"]]
        ready = c.get("/ready").json()
    assert ids[0] == "fake-model" and "fake-chat" in ids and "rag" in ids
    assert ready["generator"]["running"] is True and ready["generator"]["max_model_len"] == 256


def test_empty_generation_is_an_empty_answer() -> None:
    with client_for(FakeGenerator(reply="")) as c:
        r = c.post("/v1/chat/completions", json={"messages": MESSAGES})
        streamed = c.post("/v1/chat/completions", json={"messages": MESSAGES, "stream": True})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == ""
    assert r.json()["choices"][0]["finish_reason"] == "stop"
    assert events(streamed)[-1] == "[DONE]"


@pytest.mark.parametrize(
    "param",
    [
        "tools",
        "tool_choice",
        "functions",
        "function_call",
        "parallel_tool_calls",
        "audio",
        "prediction",
        "web_search_options",
        "reasoning_effort",
        "metadata",
    ],
)
def test_unsupported_openai_parameters_are_refused_by_name(param: str) -> None:
    value: Any = [{"type": "function", "function": {"name": "f"}}] if param == "tools" else "x"
    gen = FakeGenerator()
    with client_for(gen) as c:
        r = c.post("/v1/chat/completions", json={"messages": MESSAGES, param: value})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["code"] == "unsupported_parameter"
    assert param in error["message"]
    assert gen.prompts == []  # refused before anything reached the engine


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"frobnicate": 1}, "frobnicate"),
        ({"n": 3}, "n"),
        ({"store": True}, "store"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"service_tier": "flex"}, "service_tier"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
        ({"logit_bias": {"5": 500}}, "logit_bias"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"frequency_penalty": 3}, "frequency_penalty"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"seed": 2**64}, "seed"),
    ],
)
def test_invalid_or_unsupported_values_name_their_parameter(
    extra: dict[str, Any], param: str
) -> None:
    with client_for() as c:
        r = c.post("/v1/chat/completions", json={"messages": MESSAGES, **extra})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    if param == "n":
        assert "n requests" in r.json()["error"]["message"]  # says what to do, not "JSON body"


def test_tool_call_history_is_refused() -> None:
    msgs = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function"}]},
    ]
    with client_for() as c:
        r = c.post("/v1/chat/completions", json={"messages": msgs})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages[1].tool_calls"


def test_sampling_parameters_reach_the_engine() -> None:
    gen = FakeGenerator()
    body = {
        "messages": MESSAGES,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.25,
        "repetition_penalty": 1.3,
        "seed": 7,
        "stop": "forty",
        "logit_bias": {"42": -100},
        "response_format": {"type": "json_object"},
        "temperature": 0,
        "max_completion_tokens": 9,
    }
    with client_for(gen) as c:
        r = c.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    (sampling,) = gen.sampling
    assert sampling.frequency_penalty == 0.5 and sampling.presence_penalty == -0.25
    assert sampling.repetition_penalty == 1.3 and sampling.seed == 7
    assert sampling.stop == ("forty",) and sampling.logit_bias == {42: -100}
    assert sampling.structured.kind == "json_object"
    assert sampling.temperature == 0 and sampling.max_tokens == 9
    assert sampling.logprobs is None


def test_json_schema_reaches_the_engine() -> None:
    gen = FakeGenerator()
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "thing", "schema": schema}}
    with client_for(gen) as c:
        r = c.post("/v1/chat/completions", json={"messages": MESSAGES, "response_format": fmt})
    assert r.status_code == 200, r.text
    assert gen.sampling[0].structured.kind == "json_schema"
    assert gen.sampling[0].structured.schema == schema


def test_logprobs_are_returned_in_openai_shape() -> None:
    gen = FakeGenerator()
    body = {"messages": MESSAGES, "logprobs": True, "top_logprobs": 2}
    with client_for(gen) as c:
        r = c.post("/v1/chat/completions", json=body)
        streamed = c.post("/v1/chat/completions", json={**body, "stream": True})
    assert r.status_code == 200, r.text
    assert gen.sampling[0].logprobs == 2
    content = r.json()["choices"][0]["logprobs"]["content"]
    assert [t["token"] for t in content] == ["The", "answer", "is", "forty", "two", "[1]."]
    first = content[0]
    assert first["logprob"] < 0 and first["bytes"] == list(b"The")
    assert len(first["top_logprobs"]) == 2
    chunks = [c for c in events(streamed)[1:-1] if c["choices"]]
    assert any(c["choices"][0]["logprobs"] for c in chunks)


def test_service_tier_is_echoed() -> None:
    with client_for() as c:
        r = c.post("/v1/chat/completions", json={"messages": MESSAGES, "service_tier": "auto"})
    assert r.status_code == 200 and r.json()["service_tier"] == "default"


def test_message_names_reach_the_template() -> None:
    gen = FakeGenerator()
    msgs = [{"role": "user", "content": "Hi", "name": "ada"}]
    with client_for(gen) as c:
        assert c.post("/v1/chat/completions", json={"messages": msgs}).status_code == 200
    assert gen.messages[0][0].name == "ada"


def test_aliases_come_from_settings() -> None:
    sections: dict[str, Any] = {
        "generation": {"aliases": ["house-chat"]},
        "rag": {"model_aliases": ["kb-answers"]},
    }
    with client_for(**sections) as c:
        ids = [m["id"] for m in c.get("/v1/models").json()["data"]]
        plain = c.post("/v1/chat/completions", json={"model": "house-chat", "messages": MESSAGES})
        retrieving = c.post(
            "/v1/chat/completions", json={"model": "kb-answers", "messages": MESSAGES}
        )
        old = c.post("/v1/chat/completions", json={"model": "rag", "messages": MESSAGES})
    assert "house-chat" in ids and "kb-answers" in ids and "rag" not in ids
    assert plain.status_code == 200 and plain.json()["model"] == "fake-chat"
    # A RAG alias retrieves: without a default collection it says how to configure one.
    assert retrieving.status_code == 400 and "kb-answers" in retrieving.json()["error"]["message"]
    assert old.status_code == 404


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b'{"messages": [{"role": "user"}]}', "messages[0].content"),
        (
            b'{"messages": [{"role": "system", "content": null}, '
            b'{"role": "user", "content": "x"}]}',
            "messages[0].content",
        ),
        (b'{"messages": [{"role": "user", "content": "a\\ud800b"}]}', "messages[0].content"),
        (
            b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "\\udc00"}]}]}',
            "messages[0].content",
        ),
        (
            b'{"messages": [{"role": "user", "content": "x", "name": "\\ud800"}]}',
            "messages[0].name",
        ),
        (b'{"messages": [{"role": "user", "content": "x"}], "model": "\\ud800"}', "model"),
        (
            b'{"messages": [{"role": "user", "content": "x"}], "rag": {"score_threshold": NaN}}',
            "rag",
        ),
    ],
)
def test_hostile_messages_are_400s_naming_the_field(raw: bytes, param: str) -> None:
    with client_for() as c:
        r = c.post(
            "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
        )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_assistant_message_without_content_is_still_accepted() -> None:
    body = {"messages": [*MESSAGES, {"role": "assistant"}, {"role": "user", "content": "And?"}]}
    with client_for() as c:
        r = c.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
