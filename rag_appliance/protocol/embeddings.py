"""OpenAI /v1/embeddings request and response models (plus our extension fields)."""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictInt,
    StrictStr,
    model_validator,
)

from rag_appliance.embedding.service import EmbedParams, EmbedResult
from rag_appliance.protocol.checks import check_text

_TEXT: JsonValue = {"type": "string", "minLength": 1}
_IDS: JsonValue = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1}
# What the service accepts (no empty strings or lists), for the OpenAPI document.
_INPUT_SHAPES: list[JsonValue] = [
    _TEXT,
    {"type": "array", "items": _TEXT, "minItems": 1},
    _IDS,
    {"type": "array", "items": _IDS, "minItems": 1},
]


class EmbeddingRequest(BaseModel):
    """The body of POST /v1/embeddings, in the order of the OpenAI docs."""

    model_config = ConfigDict(extra="allow", strict=True)

    input: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]] = Field(
        description="A string or an array of strings; token ids or token-id arrays only where "
        "the server accepts them (embedding.accept_token_ids).",
        json_schema_extra={"anyOf": _INPUT_SHAPES},
    )
    model: str | None = Field(None, description="The served model name or an alias.")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="'float' lists or 'base64' little-endian float32 buffers."
    )
    dimensions: int | None = Field(
        None, ge=1, description="Shorten vectors (Matryoshka models only); re-normalised."
    )
    user: str | None = Field(None, description="End-user id; accepted and ignored.")
    input_type: Literal["query", "document"] | None = Field(
        None, description="Extension: apply the model's query or document prefix."
    )
    truncate: bool | None = Field(
        None,
        description="Extension: cut over-long inputs (true) or reject them (false); "
        "default from settings.",
    )

    @model_validator(mode="after")
    def _unicode(self) -> EmbeddingRequest:
        # InvalidRequest, not ValueError, so the 400 names the item: pydantic passes it on.
        check_text(self.model, "model")
        if isinstance(self.input, str):
            check_text(self.input, "input")
        else:
            for i, item in enumerate(self.input):
                if isinstance(item, str):
                    check_text(item, f"input[{i}]")
        return self

    def to_params(self) -> EmbedParams:
        """Plain parameters for the service."""
        raw: Any = self.input
        # A bare string and a bare token-id list are each one input.
        single = isinstance(raw, str) or (bool(raw) and isinstance(raw[0], int))
        inputs: list[str] | list[list[int]] = [raw] if single else raw
        return EmbedParams(
            inputs=inputs,
            input_type=self.input_type,
            truncate=self.truncate,
            dimensions=self.dimensions,
        )


def embedding_response(
    result: EmbedResult, model: str, encoding_format: Literal["float", "base64"]
) -> dict[str, Any]:
    """OpenAI's list-of-embeddings body; float rows stay numpy for orjson to serialise in C."""
    vectors = result.vectors.astype("<f4", copy=False)
    data: list[dict[str, Any]]
    if encoding_format == "base64":
        data = [
            {"object": "embedding", "index": i, "embedding": base64.b64encode(row.data).decode()}
            for i, row in enumerate(vectors)
        ]
    else:
        data = [
            {"object": "embedding", "index": i, "embedding": row}
            for i, row in enumerate(np.ascontiguousarray(vectors))
        ]
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
    }
