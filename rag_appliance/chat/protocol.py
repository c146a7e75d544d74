"""The body of POST /v1/chat/completions (OpenAI's, plus the `rag` extension) -> ChatParams.

Every OpenAI parameter is either honoured or refused with a 400 naming it; nothing accepted
is silently ignored. Unknown parameters are refused the way OpenAI refuses them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from rag_appliance.chat.params import ChatParams, RetrievalOptions
from rag_appliance.errors import InvalidRequest
from rag_appliance.generation.base import Message, StructuredOutput
from rag_appliance.protocol.checks import check_text

INT64 = 2**63
UNSUPPORTED = "unsupported_parameter"
_TOOLS = "tool calling is not supported by this server"
# Known OpenAI parameters this server cannot honour, with the reason given to the client.
REFUSED: dict[str, str] = {
    "tools": _TOOLS,
    "tool_choice": _TOOLS,
    "parallel_tool_calls": _TOOLS,
    "functions": "function calling is not supported by this server",
    "function_call": "function calling is not supported by this server",
    "audio": "audio output is not supported by this server",
    "prediction": "predicted outputs are not supported by this server",
    "web_search_options": "web search is not supported by this server",
    "reasoning_effort": "the served model is not a reasoning model",
    "verbosity": "the served model has no verbosity control",
    "metadata": "this server stores no completions, so 'metadata' has nowhere to go",
    "prompt_cache_key": "vLLM caches prompt prefixes by itself; no cache key is needed",
    "prompt_cache_options": "vLLM caches prompt prefixes by itself; there are no options",
    "prompt_cache_retention": "vLLM caches prompt prefixes by itself; there are no options",
    "moderation": "this server does no moderation",
}
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_MESSAGE_FIELDS_REFUSED = ("tool_calls", "function_call", "audio", "tool_call_id", "refusal")


class TextPart(BaseModel):
    """A content part; only text parts are supported."""

    model_config = ConfigDict(extra="allow", strict=True)

    type: str
    text: str | None = None


class ChatMessageIn(BaseModel):
    """One message of the conversation."""

    model_config = ConfigDict(extra="allow", strict=True)

    role: str
    content: StrictStr | list[TextPart] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    """Streaming options."""

    model_config = ConfigDict(extra="forbid", strict=True)

    include_usage: bool = False


class JsonSchemaSpec(BaseModel):
    """The `json_schema` of a json_schema response format."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """`text`, `json_object` (any JSON object) or `json_schema` (JSON matching a schema)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None


class RagOptions(BaseModel):
    """Extension: retrieve from a collection before generating."""

    model_config = ConfigDict(extra="forbid", strict=True)

    collection: str | None = Field(
        None, min_length=1, description="Collection to search (default: rag.default_collection)."
    )
    top_k: int | None = Field(None, ge=1, le=50, description="Chunks to retrieve.")
    filter: dict[str, Any] | None = Field(None, description="Metadata filter, as /v1/search.")
    score_threshold: float | None = Field(
        None, allow_inf_nan=False, description="Drop chunks scoring below this."
    )
    mode: Literal["dense", "sparse", "hybrid"] | None = Field(
        None, description="Search mode, as /v1/search (default: the same as /v1/search)."
    )
    rerank: bool | None = Field(
        None, description="Rerank with the cross-encoder (default: when one is configured)."
    )


class ChatCompletionRequest(BaseModel):
    """POST /v1/chat/completions, in the order of the OpenAI docs; extensions last."""

    model_config = ConfigDict(extra="allow", strict=True)

    messages: list[ChatMessageIn] = Field(min_length=1)
    model: str | None = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    max_completion_tokens: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    modalities: list[str] | None = None
    n: int | None = Field(None, ge=1, le=128)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    response_format: ResponseFormat | None = None
    safety_identifier: str | None = None
    seed: int | None = Field(None, ge=-INT64, lt=INT64)
    service_tier: str | None = None
    stop: StrictStr | list[StrictStr] | None = None
    store: bool | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_logprobs: int | None = Field(None, ge=0, le=20)
    top_p: float | None = Field(None, gt=0, le=1)
    user: str | None = None
    repetition_penalty: float | None = Field(
        None, gt=0, le=2, description="Extension (vLLM): >1 discourages repeating tokens."
    )
    rag: RagOptions | None = Field(
        None, description="Extension: retrieve-then-generate over a collection."
    )

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else (value or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("'stop' takes up to 4 non-empty strings")
        return value

    def to_params(self) -> ChatParams:
        """Plain parameters for the chat service; 400 for anything this server cannot honour."""
        self._refuse_unsupported()
        check_text(self.model, "model")
        check_text(self.rag.collection if self.rag else None, "rag.collection")
        return ChatParams(
            messages=self._plain_messages(),
            max_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=(self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ()),
            seed=self.seed,
            frequency_penalty=self.frequency_penalty or 0.0,
            presence_penalty=self.presence_penalty or 0.0,
            repetition_penalty=self.repetition_penalty or 1.0,
            logit_bias=self._logit_bias(),
            logprobs=(self.top_logprobs or 0) if self.logprobs else None,
            structured=self._structured(),
            rag=None if self.rag is None else RetrievalOptions(**self.rag.model_dump()),
            user=self.user or self.safety_identifier,
        )

    def _refuse_unsupported(self) -> None:
        for name, value in (self.model_extra or {}).items():
            if name in REFUSED:
                if value is not None:
                    raise InvalidRequest(f"'{name}': {REFUSED[name]}", param=name, code=UNSUPPORTED)
                continue
            raise InvalidRequest(
                f"Unrecognized request argument supplied: {name}", param=name, code=UNSUPPORTED
            )
        if self.n not in (None, 1):
            raise InvalidRequest(
                "'n' > 1 is not supported: this server generates one choice per request; "
                "send n requests (with different seeds) instead",
                param="n",
                code=UNSUPPORTED,
            )
        if self.modalities not in (None, ["text"]):
            raise InvalidRequest(
                "only the 'text' modality is supported", param="modalities", code=UNSUPPORTED
            )
        if self.store:
            raise InvalidRequest(
                "this server does not store completions ('store' must be false)",
                param="store",
                code=UNSUPPORTED,
            )
        if self.service_tier not in (None, "auto", "default"):
            raise InvalidRequest(
                "this server has one service tier: 'auto' or 'default'",
                param="service_tier",
                code=UNSUPPORTED,
            )
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidRequest(
                "'top_logprobs' needs 'logprobs': true", param="top_logprobs", code="invalid_value"
            )

    def _plain_messages(self) -> list[Message]:
        return [_plain(i, m) for i, m in enumerate(self.messages)]

    def _logit_bias(self) -> dict[int, float] | None:
        if not self.logit_bias:
            return None
        bias: dict[int, float] = {}
        for key, value in self.logit_bias.items():
            if not key.isdigit() or not -100 <= value <= 100:
                raise InvalidRequest(
                    "'logit_bias' maps token ids (as strings) to numbers from -100 to 100",
                    param="logit_bias",
                    code="invalid_value",
                )
            bias[int(key)] = value
        return bias

    def _structured(self) -> StructuredOutput | None:
        fmt = self.response_format
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_object":
            return StructuredOutput("json_object")
        if fmt.json_schema is None:
            raise InvalidRequest(
                "response_format type 'json_schema' needs a 'json_schema' object",
                param="response_format.json_schema",
            )
        schema = fmt.json_schema.schema_
        return StructuredOutput("json_schema", schema or {"type": "object"})


def _plain(index: int, message: ChatMessageIn) -> Message:
    where = f"messages[{index}]"
    role = _ROLES.get(message.role)
    if role is None:
        if message.role in ("tool", "function"):
            raise InvalidRequest(
                f"'{where}.role' is '{message.role}': {_TOOLS}",
                param=f"{where}.role",
                code=UNSUPPORTED,
            )
        raise InvalidRequest(
            f"'{where}.role' must be one of system, developer, user, assistant",
            param=f"{where}.role",
            code="invalid_value",
        )
    for name in _MESSAGE_FIELDS_REFUSED:
        if (message.model_extra or {}).get(name) is not None:
            raise InvalidRequest(
                f"'{where}.{name}' is not supported: {_TOOLS}",
                param=f"{where}.{name}",
                code=UNSUPPORTED,
            )
    if message.content is None and role in ("system", "user"):
        raise InvalidRequest(
            f"'{where}.content' is required for a {message.role} message",
            param=f"{where}.content",
            code="missing_required_parameter",
        )
    text = _text(where, message)
    check_text(text, f"{where}.content")
    check_text(message.name, f"{where}.name")
    return Message(role, text, message.name or None)


def _text(where: str, message: ChatMessageIn) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    texts: list[str] = []
    for j, part in enumerate(message.content):
        if part.type != "text" or part.text is None:
            raise InvalidRequest(
                f"'{where}.content[{j}]' is a '{part.type}' part: only text parts are supported",
                param=f"{where}.content[{j}].type",
                code=UNSUPPORTED,
            )
        texts.append(part.text)
    return "".join(texts)
