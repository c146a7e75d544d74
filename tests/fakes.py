"""Fakes for unit tests only: a character-level "model" with deterministic vectors."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from rag_appliance.embedding.models import ModelProfile

FAKE_PROFILE = ModelProfile(
    name="fake-model",
    dimension=8,
    max_length=32,
    pooling="mean",
    query_prefix="q: ",
    document_prefix="d: ",
    matryoshka_dims=(4,),
    aliases=("fake-alias",),
)

CLS, SEP = 1, 2


class FakeEncoder:
    """Tokenises one id per character and maps a sequence to a unit vector of its ids."""

    def __init__(self, profile: ModelProfile = FAKE_PROFILE, fail_on: int | None = None) -> None:
        self.profile = profile
        self.max_length = profile.max_length
        self.vocab_size = 1000
        self.fail_on = fail_on
        self.batches: list[list[int]] = []  # lengths of each batch seen
        self.lock = threading.Lock()
        self.gate: threading.Event | None = None
        self.entered = threading.Event()  # set once encode() runs: a pass is in the thread

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return [[3 + (ord(c) % 900) for c in t] for t in texts]

    def finalize(self, ids: Sequence[int], max_length: int) -> list[int]:
        return [CLS, *ids[: max_length - 2], SEP]

    def n_special(self) -> int:
        return 2

    def encode(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        with self.lock:
            self.batches.append([len(s) for s in batch])
        if self.fail_on is not None and any(self.fail_on in s for s in batch):
            raise RuntimeError("secret internal detail: CUDA exploded")
        return np.stack([fake_vector(s, self.profile.dimension) for s in batch])


def fake_vector(ids: Sequence[int], dim: int) -> np.ndarray:
    """The vector FakeEncoder returns for a finalized sequence."""
    rng = np.random.default_rng(sum((i + 1) * t for i, t in enumerate(ids)))
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


class FakeGenerator:
    """A word-level 'chat model' for unit tests: echoes a fixed reply word by word."""

    def __init__(
        self,
        reply: str = "The answer is forty two [1].",
        max_model_len: int = 256,
        fail_after: int | None = None,
        overloaded: bool = False,
    ) -> None:
        from rag_appliance.generation.base import GeneratorInfo

        self.info = GeneratorInfo("fake-chat", "fake", "cpu", "float32", max_model_len)
        self.reply = reply
        self.fail_after = fail_after
        self.overloaded = overloaded
        self.prompts: list[list[int]] = []
        self.sampling: list[Any] = []  # the SamplingParams of each request
        self.messages: list[list[Any]] = []  # every conversation templated
        self.vocab: dict[str, int] = {}
        self.started = False

    def _ids(self, text: str) -> list[int]:
        return [self.vocab.setdefault(w, len(self.vocab) + 10) for w in text.split()]

    def chat_prompt(self, messages: Any) -> list[int]:
        self.messages.append(list(messages))
        ids: list[int] = []
        for m in messages:
            ids += [1, *self._ids(f"{m.role}: {m.content}"), 2]
        return [*ids, 3]

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    vocab_size = 100_000  # with tokenize(): the raw prompts of /v1/completions

    def tokenize(self, text: str) -> list[int]:
        return self._ids(text)

    def decode(self, ids: list[int]) -> str:
        words = {v: k for k, v in self.vocab.items()}
        return " ".join(words.get(i, "") for i in ids)

    async def stream(self, prompt: list[int], params: Any, request_id: str) -> Any:
        from rag_appliance.errors import EngineError, Overloaded
        from rag_appliance.generation.base import Delta, TokenLogprob

        if self.overloaded:
            raise Overloaded("busy", headers={"Retry-After": "1"})
        self.prompts.append(prompt)
        self.sampling.append(params)
        words = self.reply.split()
        n = min(len(words), params.max_tokens)
        for i in range(n):
            if self.fail_after is not None and i >= self.fail_after:
                raise EngineError("the generator failed")
            text = words[i] if i == 0 else " " + words[i]
            if any(s in text for s in params.stop):
                yield Delta("", "stop", i)
                return
            last = i == n - 1
            reason = ("length" if n < len(words) else "stop") if last else None
            logprobs: tuple[TokenLogprob, ...] = ()
            if params.logprobs is not None:  # made-up but well-formed: -1/(rank) per word
                top = tuple((f"{words[i]}~{r}", -float(r)) for r in range(1, params.logprobs + 1))
                logprobs = (TokenLogprob(words[i], -1.0, top),)
            yield Delta(text, reason, i + 1, logprobs)

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False
