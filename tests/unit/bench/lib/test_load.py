"""bench/lib/load.py: body formats, reply decoding, job splitting and live multi-process load."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from tests.conftest import live_server, make_settings
from tests.fakes import FAKE_PROFILE, FakeEncoder


@pytest.fixture
def load(bench_module: Any) -> Any:
    return bench_module("lib.load")


@pytest.fixture
def driver(bench_module: Any) -> Any:
    return bench_module("lib.driver")


def openai_body(vectors: np.ndarray, b64: bool, tokens: int = 7) -> bytes:
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode()
            if b64
            else v.tolist(),
        }
        for i, v in enumerate(vectors)
    ]
    return orjson.dumps({"data": data, "usage": {"prompt_tokens": tokens}})


def test_request_body_per_server_kind(load: Any) -> None:
    assert load.request_body(["a"], bare_list=True, model="m") == ["a"]
    assert load.request_body(["a"], bare_list=False) == {
        "input": ["a"],
        "encoding_format": "base64",
    }
    body = load.request_body(["a"], bare_list=False, model="m")
    assert list(body) == ["input", "model", "encoding_format"]
    assert body["model"] == "m"


def test_decode_reply_reads_base64_and_float_rows(load: Any) -> None:
    vectors = np.array([[0.6, 0.8], [1.0, 0.0]], dtype=np.float32)
    for b64 in (True, False):
        content = openai_body(vectors, b64)
        reply = load.decode_reply(content, base64_vectors=b64)
        np.testing.assert_allclose(reply.vectors, vectors)
        assert reply.vectors.dtype == np.float32
        assert (reply.tokens, reply.nbytes) == (7, len(content))
    shuffled = orjson.loads(openai_body(vectors, False))
    shuffled["data"].reverse()
    with pytest.raises(RuntimeError, match="not in input order"):
        load.decode_reply(orjson.dumps(shuffled), base64_vectors=False)


def test_http_sender_posts_the_body_and_decodes_the_reply(load: Any) -> None:
    posted: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        posted.append(body)
        texts = body if isinstance(body, list) else body["input"]
        if texts == ["fail"]:
            return httpx.Response(503, text="overloaded")
        vectors = np.tile(np.array([1.0, 0.0], dtype=np.float32), (len(texts), 1))
        return httpx.Response(200, content=openai_body(vectors, not isinstance(body, list)))

    async def go() -> list[Any]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            appliance = load.http_sender(client, "http://x/v1/embeddings", False, model="m")
            seed = load.http_sender(client, "http://x/v1/embeddings", True, name="seed")
            replies = [await appliance(["a", "b"]), await seed(["c"])]
            with pytest.raises(RuntimeError, match="seed: HTTP 503: overloaded"):
                await seed(["fail"])
            return replies

    replies = asyncio.run(go())
    assert [r.vectors.shape for r in replies] == [(2, 2), (1, 2)]
    assert posted[:2] == [
        {"input": ["a", "b"], "model": "m", "encoding_format": "base64"},
        ["c"],
    ]


def test_split_job_shares_clients_and_requests(load: Any, driver: Any) -> None:
    plan = driver.Plan(seconds=5.0, min_requests=8, max_requests=10)
    job = load.LoadJob("x", "http://h/v1/embeddings", False, ["t"], 4, 7, plan, 8, True)
    jobs = load.split_job(job, 3)
    assert [j.clients for j in jobs] == [3, 2, 2]
    assert [(j.index, j.stride) for j in jobs] == [(0, 3), (1, 3), (2, 3)]
    assert all(j.plan == driver.Plan(5.0, 3, 4) for j in jobs)
    assert len(load.split_job(job, 99)) == 7  # never more processes than clients


def test_load_drives_a_live_appliance_from_here_and_from_spawned_processes(
    load: Any, driver: Any
) -> None:
    """The real app (fake model): one in-process loop, then two load processes at a barrier."""
    settings = make_settings(server={"ui": False}, generation={"enabled": False})
    texts = [f"text number {i}" for i in range(50)]
    with live_server(settings, FakeEncoder()) as url:
        job = load.LoadJob(
            name="appliance",
            url=f"{url}/v1/embeddings",
            bare_list=False,
            texts=texts,
            batch=4,
            clients=4,
            plan=driver.Plan(seconds=0.2, min_requests=8, max_requests=10_000),
            dim=FAKE_PROFILE.dimension,
            warm=True,
        )
        runs = [load.run_load(job, procs=1), load.run_load(job, procs=2)]
        wrong_dim = dataclasses.replace(job, dim=FAKE_PROFILE.dimension + 1)
        with pytest.raises(RuntimeError, match=r"load process failed: .*expected 4 x 9 vectors"):
            load.run_load(wrong_dim, procs=2)
    for run in runs:
        assert run.requests >= 8
        assert run.texts == 4 * run.requests
        assert run.texts_per_s > 0
        assert run.bytes_per_response > 0
