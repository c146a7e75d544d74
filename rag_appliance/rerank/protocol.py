"""The body of POST /v1/rerank (Cohere's and Jina's shape, as vLLM and Infinity serve it).

Request: `model`, `query`, `documents` (strings, or Cohere v1's `{"text": ...}` objects),
`top_n`, `return_documents`. Response: `id`, `model`, `results: [{index, relevance_score,
document?: {text}}]` best first, `usage: {prompt_tokens, total_tokens}`. Parameters of those
APIs that this server cannot honour are refused by name; unknown ones too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from rag_appliance.errors import InvalidRequest
from rag_appliance.rerank.service import RerankResult

UNSUPPORTED = "unsupported_parameter"
_CUT = "documents are cut to the reranker's max_length tokens per (query, document) pair"
# Known parameters of Cohere, Jina, TEI and vLLM rerank APIs that this server cannot honour.
REFUSED: dict[str, str] = {
    "rank_fields": "documents are ranked on their 'text' only",
    "max_chunks_per_doc": _CUT + "; they are not split into chunks",
    "max_tokens_per_doc": _CUT,
    "truncate_prompt_tokens": _CUT,
    "raw_scores": "scores are always the sigmoid of the model's logit (0..1)",
}


class DocumentIn(BaseModel):
    """A document given as an object (Cohere v1, Jina); only its text is ranked."""

    model_config = ConfigDict(extra="allow", strict=True)

    text: StrictStr


@dataclass(frozen=True)
class RerankParams:
    """One rerank call, as plain values."""

    query: str
    documents: list[str]
    top_n: int | None
    return_documents: bool


class RerankRequest(BaseModel):
    """POST /v1/rerank."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str | None = Field(None, description="The served reranker name or an alias.")
    query: StrictStr = Field(description="The search query.")
    documents: list[StrictStr | DocumentIn] = Field(
        description="The texts to rank: strings, or objects with a 'text' field."
    )
    top_n: int | None = Field(
        None, description="Return the top_n best documents (default: all, ranked)."
    )
    return_documents: bool = Field(
        False, description="Include each result's text as document.text (Cohere's default)."
    )

    def to_params(self) -> RerankParams:
        """Plain parameters for the service; 400 for anything this server cannot honour."""
        for name, value in (self.model_extra or {}).items():
            if name in REFUSED:
                if value is not None and value is not False:
                    raise InvalidRequest(f"'{name}': {REFUSED[name]}", param=name, code=UNSUPPORTED)
                continue
            raise InvalidRequest(
                f"Unrecognized request argument supplied: {name}", param=name, code=UNSUPPORTED
            )
        return RerankParams(
            query=self.query,
            documents=[d if isinstance(d, str) else d.text for d in self.documents],
            top_n=self.top_n,
            return_documents=self.return_documents,
        )


def rerank_response(result: RerankResult, model: str, params: RerankParams) -> dict[str, Any]:
    """The response body: results best first, usage in the model's tokens."""
    results: list[dict[str, Any]] = []
    for index, score in result.ranking:
        item: dict[str, Any] = {"index": index, "relevance_score": score}
        if params.return_documents:
            item["document"] = {"text": params.documents[index]}
        results.append(item)
    return {
        "id": f"rerank-{uuid.uuid4().hex}",
        "model": model,
        "results": results,
        "usage": {"prompt_tokens": result.tokens, "total_tokens": result.tokens},
    }
