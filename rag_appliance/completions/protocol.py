"""The body of POST /v1/completions (OpenAI's legacy completions) -> prompt and ChatParams.

The sampling fields are OpenAI's chat ones under their legacy names, so they are checked by
the chat request itself (one set of refusals); what only exists here is checked here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from rag_appliance.chat.params import ChatParams
from rag_appliance.chat.protocol import INT64, UNSUPPORTED, ChatCompletionRequest, RagOptions
from rag_appliance.chat.protocol import StreamOptions as StreamOptions
from rag_appliance.errors import InvalidRequest
from rag_appliance.protocol.checks import check_text

# Fields passed to the chat request as they are.
_SHARED = (
    "model",
    "frequency_penalty",
    "logit_bias",
    "max_tokens",
    "n",
    "presence_penalty",
    "seed",
    "stop",
    "temperature",
    "top_p",
    "user",
    "repetition_penalty",
    "rag",
)


@dataclass(frozen=True)
class CompletionParams:
    """One completion: the prompt (text or token ids) and the chat parameters around it."""

    text: str | None  # the prompt as text; None when it came as token ids
    token_ids: list[int] | None
    chat: ChatParams  # the prompt as the user message, with every sampling parameter


class CompletionRequest(BaseModel):
    """POST /v1/completions, in the order of the OpenAI docs; extensions last."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str | None = None
    prompt: StrictStr | list[StrictStr] | list[int] | list[list[int]]
    best_of: int | None = Field(None, ge=1, le=20)
    echo: bool | None = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: int | None = Field(None, ge=0, le=5)
    max_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1, le=128)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = Field(None, ge=-INT64, lt=INT64)
    stop: StrictStr | list[StrictStr] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    suffix: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    user: str | None = None
    repetition_penalty: float | None = Field(
        None, gt=0, le=2, description="Extension (vLLM): >1 discourages repeating tokens."
    )
    rag: RagOptions | None = Field(
        None, description="Extension: retrieve-then-generate over a collection."
    )

    def to_params(self) -> CompletionParams:
        """The prompt and plain parameters; 400 for anything this server cannot honour."""
        self._refuse_unsupported()
        text, ids = self._prompt()
        fields: dict[str, Any] = {
            name: getattr(self, name) for name in _SHARED if name in self.model_fields_set
        }
        if self.logprobs is not None:
            fields |= {"logprobs": True, "top_logprobs": self.logprobs}
        # The chat request checks and converts every sampling field (one set of refusals).
        message = {"role": "user", "content": text or "(token ids)"}
        try:
            request = ChatCompletionRequest.model_validate({**fields, "messages": [message]})
        except ValidationError as exc:  # the chat model's own checks, e.g. of `stop`
            first = exc.errors()[0]
            param = str(first["loc"][0]) if first["loc"] else None
            raise InvalidRequest(f"Invalid '{param}': {first['msg']}", param=param) from None
        return CompletionParams(text, ids, request.to_params())

    def _refuse_unsupported(self) -> None:
        for name in self.model_extra or {}:
            raise InvalidRequest(
                f"Unrecognized request argument supplied: {name}", param=name, code=UNSUPPORTED
            )
        if self.echo:
            raise InvalidRequest(
                "'echo' is not supported: the prompt is not repeated in the completion",
                param="echo",
                code=UNSUPPORTED,
            )
        if self.suffix:
            raise InvalidRequest(
                "'suffix' is not supported: this server does not insert text (fill-in-the-middle)",
                param="suffix",
                code=UNSUPPORTED,
            )
        if self.best_of not in (None, 1):
            raise InvalidRequest(
                "'best_of' > 1 is not supported: this server generates one completion per request",
                param="best_of",
                code=UNSUPPORTED,
            )

    def _prompt(self) -> tuple[str | None, list[int] | None]:
        prompt = self.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
            if len(prompt) != 1:
                raise InvalidRequest(
                    "'prompt' takes one prompt per request (a string, a list of one string, "
                    "or token ids); send one request per prompt",
                    param="prompt",
                    code=UNSUPPORTED,
                )
            prompt = prompt[0]
        if isinstance(prompt, str):
            check_text(prompt, "prompt")
            if not prompt:
                raise InvalidRequest("'prompt' must not be empty", param="prompt")
            return prompt, None
        ids = [int(i) for i in prompt]  # type: ignore[arg-type]
        if not ids or any(not 0 <= i < INT64 for i in ids):
            raise InvalidRequest(
                "'prompt' token ids must be a non-empty list of non-negative integers",
                param="prompt",
            )
        return None, ids
