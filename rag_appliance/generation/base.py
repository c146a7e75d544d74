"""The Generator protocol and its plain data types (no vLLM import here)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class Message:
    """One chat message with plain-text content."""

    role: str  # "system" | "user" | "assistant"
    content: str
    name: str | None = None  # passed to the chat template, which may use it


@dataclass(frozen=True)
class StructuredOutput:
    """A constraint on the generated text: any JSON object, or JSON matching a schema."""

    kind: Literal["json_object", "json_schema"]
    schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class SamplingParams:
    """Sampling for one request; `max_tokens` is already resolved (never None)."""

    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...] = ()
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] | None = None
    logprobs: int | None = None  # None: no logprobs; k: the chosen token and k alternatives
    structured: StructuredOutput | None = None


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token's log-probability and its most likely alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Delta:
    """A piece of generated text; the last one of a request carries finish_reason."""

    text: str
    finish_reason: str | None = None  # "stop" | "length"
    completion_tokens: int = 0  # cumulative
    logprobs: tuple[TokenLogprob, ...] = ()  # of this delta's tokens, when asked for


@dataclass
class GeneratorInfo:
    """What /ready reports about the generator."""

    model: str
    source: str
    device: str
    dtype: str
    max_model_len: int
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the GPU memory split


class Generator(Protocol):
    """A chat model: templating, token counting and streamed generation."""

    info: GeneratorInfo

    def chat_prompt(self, messages: Sequence[Message]) -> list[int]:
        """Token ids of the messages rendered with the model's chat template."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of plain text (no template, no special tokens)."""
        ...

    def decode(self, ids: list[int]) -> str:
        """Text of token ids (to log or inspect the exact prompt sent to the engine)."""
        ...

    def stream(
        self, prompt: list[int], params: SamplingParams, request_id: str
    ) -> AsyncIterator[Delta]:
        """Generate; raises Overloaded when full. Cancelling the iterator aborts the request."""
        ...

    async def start(self) -> None:
        """Start the engine (blocking work happens here, not in __init__)."""
        ...

    async def stop(self) -> None:
        """Stop the engine; in-flight requests end."""
        ...
