"""The embedding service: validation, prefixes, tokenisation and limits around the batcher."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rag_appliance.embedding.batcher import MicroBatcher
from rag_appliance.embedding.models import InputType, ModelProfile, with_overrides
from rag_appliance.errors import InvalidRequest, ModelNotFound
from rag_appliance.settings import EmbeddingSettings

# Token ids from another tokenizer (tiktoken's, above all) give wrong vectors without any error.
TOKEN_IDS_REFUSED = (
    "Token-id inputs are not accepted: send 'input' as text (a string or an array of strings)."
    " Clients that pre-tokenise with tiktoken send ids that mean nothing to this model; with"
    " LangChain's OpenAIEmbeddings, pass check_embedding_ctx_length=False so that it sends text."
    " The server's operator can accept ids of this model's own tokenizer with"
    " embedding.accept_token_ids."
)


class TokenEncoder(Protocol):
    """What the service needs from a model (the real `Encoder`, or a fake in unit tests)."""

    profile: ModelProfile
    max_length: int
    vocab_size: int

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]: ...
    def finalize(self, ids: Sequence[int], max_length: int) -> list[int]: ...
    def n_special(self) -> int: ...
    def encode(self, batch: Sequence[Sequence[int]]) -> np.ndarray: ...


@dataclass(frozen=True)
class EmbedParams:
    """One embeddings call, as plain values."""

    inputs: list[str] | list[list[int]]
    input_type: InputType | None = None
    truncate: bool | None = None
    dimensions: int | None = None


@dataclass(frozen=True)
class EmbedResult:
    """Unit vectors in input order and the tokens the model processed."""

    vectors: np.ndarray
    prompt_tokens: int


class EmbeddingService:
    """Serves embedding calls for one model through a shared micro-batcher."""

    def __init__(self, encoder: TokenEncoder, settings: EmbeddingSettings) -> None:
        self.encoder = encoder
        self.settings = settings
        self.profile = with_overrides(encoder.profile, settings.matryoshka_dims)
        self.served_name = settings.served_name or self.profile.name
        self._names = {
            self.served_name,
            self.profile.name,
            *self.profile.aliases,
            *settings.aliases,
        }
        limit = settings.max_tokens_per_input or encoder.max_length
        self.max_tokens_per_input = min(limit, encoder.max_length)
        self.batcher = MicroBatcher(
            encoder.encode,
            max_tokens=max(settings.batch_max_tokens, self.max_tokens_per_input),
            max_size=settings.batch_max_size,
            queue_max_items=settings.queue_max_items,
            retry_after_s=settings.retry_after_s,
            max_queue_wait_s=settings.max_queue_wait_s,
        )

    @property
    def model_names(self) -> list[str]:
        """Every name this model answers to, served name first."""
        return [self.served_name, *sorted(self._names - {self.served_name})]

    def check_model(self, name: str | None) -> str:
        """The served name for a requested model, or a 404 model_not_found."""
        if name is None or name in self._names:
            return self.served_name
        raise ModelNotFound(
            f"The model '{name}' does not exist; this server serves '{self.served_name}'",
            param="model",
        )

    def largest_batch(self) -> tuple[int, int]:
        """(inputs, tokens each) of the batcher's largest pass: longest inputs fill the budget."""
        length = self.max_tokens_per_input
        budget = max(self.settings.batch_max_tokens, length)
        return max(1, min(self.settings.batch_max_size, budget // length)), length

    async def start(self) -> None:
        """Start the batcher."""
        await self.batcher.start()

    async def stop(self) -> None:
        """Stop the batcher; queued requests get a 503."""
        await self.batcher.stop()

    async def embed(self, params: EmbedParams) -> EmbedResult:
        """Validate, tokenise, encode and (if asked) shorten the inputs."""
        n, most = len(params.inputs), self.settings.max_inputs_per_request
        if n == 0:
            raise InvalidRequest("'input' must not be empty", param="input")
        if n > most:
            raise InvalidRequest(f"'input' has {n} items; at most {most} allowed", param="input")
        try:
            self.profile.check_dimensions(params.dimensions)
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="dimensions") from None
        content = await self._token_ids(params)
        sequences = self._fit(content, params)
        tokens = sum(len(s) for s in sequences)
        if tokens > self.settings.max_tokens_per_request:
            raise InvalidRequest(
                f"the request has {tokens} tokens; at most {self.settings.max_tokens_per_request}"
                " are allowed per request",
                param="input",
                code="context_length_exceeded",
            )
        vectors = await self.batcher.embed(sequences)
        if params.dimensions is not None and params.dimensions != vectors.shape[1]:
            vectors = vectors[:, : params.dimensions]
            vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return EmbedResult(
            vectors=np.ascontiguousarray(vectors, dtype=np.float32), prompt_tokens=tokens
        )

    async def _token_ids(self, params: EmbedParams) -> list[list[int]]:
        prefix = self.profile.prefix(params.input_type)
        inputs = params.inputs
        if isinstance(inputs[0], str):
            texts = [prefix + t for t in inputs]
            for i, text in enumerate(inputs):
                if not text:
                    raise InvalidRequest(f"input[{i}] is an empty string", param=f"input[{i}]")
            # The Rust tokenizer releases the GIL: tokenise off the event loop.
            return await asyncio.to_thread(self.encoder.tokenize, texts)
        if not self.settings.accept_token_ids:
            raise InvalidRequest(TOKEN_IDS_REFUSED, param="input", code="token_ids_not_accepted")
        prefix_ids = self.encoder.tokenize([prefix])[0] if prefix else []
        out: list[list[int]] = []
        for i, ids in enumerate(inputs):
            if not ids:
                raise InvalidRequest(f"input[{i}] is an empty token list", param=f"input[{i}]")
            bad = next((t for t in ids if not 0 <= t < self.encoder.vocab_size), None)
            if bad is not None:
                raise InvalidRequest(
                    f"input[{i}] has token id {bad}, outside this model's vocabulary"
                    f" (0..{self.encoder.vocab_size - 1})",
                    param=f"input[{i}]",
                )
            out.append([*prefix_ids, *ids])
        return out

    def _fit(self, content: list[list[int]], params: EmbedParams) -> list[list[int]]:
        truncate = self.settings.truncate if params.truncate is None else params.truncate
        limit = self.max_tokens_per_input
        room = limit - self.encoder.n_special()
        if not truncate:
            for i, ids in enumerate(content):
                if len(ids) > room:
                    raise InvalidRequest(
                        f"input[{i}] has {len(ids) + self.encoder.n_special()} tokens; the limit"
                        f' is {limit}. Shorten it or send "truncate": true',
                        param=f"input[{i}]",
                        code="context_length_exceeded",
                    )
        return [self.encoder.finalize(ids, limit) for ids in content]
