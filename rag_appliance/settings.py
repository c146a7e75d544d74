"""Settings tree: defaults (the CPU profile) < YAML profile < RAG_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from rag_appliance.auth.keys import ApiKeySpec, check_key
from rag_appliance.errors import SettingsError
from rag_appliance.jobs.settings import JobsSettings
from rag_appliance.settings_engines import (
    Dtype,
    EmbeddingSettings,
    GenerationSettings,
    RerankSettings,
    Section,
)

__all__ = [
    "BatchSettings",
    "Bm25Settings",
    "Dtype",
    "EmbeddingSettings",
    "GenerationSettings",
    "IngestSettings",
    "JobsSettings",
    "RagSettings",
    "RerankSettings",
    "SearchLogSettings",
    "SearchSettings",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "StoreSettings",
    "load_settings",
    "normalize_origin",
]


_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(value: str) -> str | None:
    """`scheme://host:port` in lower case with the default port explicit; None if no origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port  # raises on a bad port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None  # also "null", the opaque origin of sandboxed frames and file: pages
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None  # a path would never match what browsers send
    return f"{parts.scheme}://{parts.hostname}:{port or _DEFAULT_PORTS[parts.scheme]}"


class ServerSettings(Section):
    """HTTP server and request limits."""

    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port to bind.")
    api_keys: list[str | ApiKeySpec] = Field(
        default_factory=list,
        description="Accepted bearer keys: a string (full access; 'sha256:<hex>' for a hashed "
        "key) or {key, role, collections, name} (docs/security.md); empty: no authentication.",
    )
    protect_ops: bool = Field(
        True,
        description="With api_keys: /metrics, /docs, /redoc and /openapi.json need an admin key, "
        "and /ready shows its details to admin keys only (its status stays open).",
    )
    auth_max_failures: int = Field(
        10,
        ge=0,
        description="Wrong keys from one client address within auth_failure_window_s before "
        "it gets 429 until the window passes (0: no throttling).",
    )
    auth_failure_window_s: float = Field(
        60.0, gt=0, description="The window of auth_max_failures, in seconds."
    )
    max_body_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="Largest accepted request body (413 beyond it)."
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Web origins (e.g. 'https://app.example.com', or '*' for any) allowed to "
        "call the API from a browser; empty: same-origin only.",
    )
    ui: bool = Field(True, description="Serve the web UI at /ui (needs the 'ui' extra, gradio).")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level of the appliance and uvicorn."
    )

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, keys: list[str | ApiKeySpec]) -> list[str | ApiKeySpec]:
        return [check_key(key) if isinstance(key, str) else key for key in keys]

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and normalize_origin(origin) is None:
                raise ValueError(
                    f"{origin!r} is not an origin like 'https://app.example.com' or '*'"
                )
        # Starlette's CORSMiddleware compares strings with what browsers send: no slash.
        return [origin.strip().rstrip("/").lower() for origin in origins]


class StoreSettings(Section):
    """Where vectors live: embedded Qdrant (default), a Qdrant server, PostgreSQL or Milvus."""

    backend: Literal["qdrant_edge", "qdrant_server", "pgvector", "milvus"] = Field(
        "qdrant_edge",
        description="'qdrant_edge': the Qdrant engine in-process under data_dir; "
        "'qdrant_server': a Qdrant server or cluster at `url`; 'pgvector': PostgreSQL with "
        "pgvector at `url` (without one, an embedded PostgreSQL under data_dir); 'milvus': a "
        "Milvus server at `url` (without one, Milvus Lite under data_dir).",
    )
    url: str | None = Field(
        None,
        description="Qdrant server URL (qdrant_server), PostgreSQL conninfo/URL (pgvector) or "
        "Milvus URI (milvus).",
    )
    api_key: str | None = Field(
        None,
        description="Qdrant server API key (qdrant_server); Milvus token, 'user:password' or "
        "an API key (milvus with `url`).",
    )
    timeout_s: float = Field(
        30.0, gt=0, description="Qdrant or Milvus server request (and connect) timeout."
    )
    hnsw_threshold: int = Field(
        20_000,
        ge=0,
        description="Embedded store: points in a segment before Qdrant builds its HNSW index "
        "(below it, search is exact).",
    )
    quantization: Literal["auto", "int8", "none"] = Field(
        "auto",
        description="Embedded store: int8 scalar quantization of the dense vectors (a copy a "
        "quarter the size, kept in RAM, searched first and rescored with the originals; RAM "
        "falls with on_disk_vectors). 'auto': from a collection's first "
        "index build at `quantization_threshold` points or more; 'int8': always; 'none': never "
        "for collections not yet quantized (a quantized one stays so).",
    )
    quantization_threshold: int = Field(
        500_000,
        ge=0,
        description="Embedded store: points from which a collection is large (int8 with "
        "quantization 'auto', and the large HNSW build parameters).",
    )
    quantization_oversampling: float = Field(
        2.0,
        ge=1.0,
        le=16.0,
        description="Embedded store: candidates scored with int8 per result, re-scored with the "
        "original vectors.",
    )
    on_disk_vectors: bool = Field(
        False,
        description="Embedded store: keep the original dense vectors in memory-mapped files "
        "read on demand (with int8, the quantized copy stays in RAM) instead of in RAM.",
    )
    hnsw_m: int | None = Field(
        None,
        ge=4,
        le=128,
        description="Embedded store: HNSW edges per node at index builds (default by size: 16).",
    )
    hnsw_ef_construct: int | None = Field(
        None,
        ge=4,
        le=1000,
        description="Embedded store: HNSW build candidates (default by size: 100, 128 for a "
        "large collection).",
    )
    hnsw_ef: int | None = Field(
        None,
        ge=4,
        le=10_000,
        description="Embedded store: HNSW search candidates, at least the limit (default by "
        "size: 64 below 100k points, 100 below 500k, 128 from there).",
    )
    pool_size: int = Field(
        8,
        ge=1,
        le=1000,
        description="pgvector: the most PostgreSQL connections the store keeps open (it also "
        "uses timeout_s to connect and to wait for a free connection).",
    )

    @model_validator(mode="after")
    def _check_url(self) -> StoreSettings:
        if self.backend == "qdrant_server" and not self.url:
            raise ValueError("store.url is required when store.backend is qdrant_server")
        return self


class Bm25Settings(Section):
    """How new collections tokenise text for their BM25 sparse vectors (fixed per collection)."""

    enabled: bool = Field(True, description="Give new collections BM25 sparse vectors.")
    language: str = Field(
        "english", description="Stopword list and Snowball stemmer, e.g. 'english', 'german'."
    )
    stemming: bool = Field(True, description="Stem terms (Snowball) before indexing.")
    stopwords: bool = Field(True, description="Drop the language's stopwords.")


class IngestSettings(Section):
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
    parse_workers: int = Field(
        2, ge=1, description="Worker processes that parse uploaded files (started on first use)."
    )
    parse_timeout_s: float = Field(
        30.0, gt=0, description="Wall-clock limit per file parse; the worker is killed past it."
    )
    parse_idle_s: float | None = Field(
        30.0,
        gt=0,
        description="Seconds without a parse after which the parse workers stop (started again "
        "by the next file); null: they run until the server stops.",
    )
    parse_memory_mb: int = Field(
        2048, ge=256, description="Address-space limit (RLIMIT_AS) of each parse worker, in MiB."
    )
    max_unzipped_bytes: int = Field(
        128 * 1024 * 1024,
        ge=1024,
        description="Most bytes a DOCX (a zip) may inflate to, counted while inflating.",
    )
    max_zip_entries: int = Field(2000, ge=1, description="Most entries in a DOCX's zip.")
    max_zip_ratio: int = Field(
        100, ge=1, description="Highest inflate ratio of a DOCX's zip entry over 1 MiB."
    )
    max_pdf_pages: int = Field(2000, ge=1, description="Most pages in one PDF.")
    max_document_chars: int = Field(
        64 * 1024 * 1024,
        ge=1,
        description="Most characters of text extracted from one file or sent as one document.",
    )
    max_chunks_per_document: int = Field(
        200_000, ge=1, description="Most chunks one document may make (413 beyond it)."
    )
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


class SearchSettings(Section):
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


class RagSettings(Section):
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
    history_turns: int = Field(
        3,
        ge=0,
        le=20,
        description="Earlier user messages searched with a follow-up question, so that 'it' "
        "finds what it refers to (0: the newest message alone).",
    )
    context_share: float = Field(
        0.6,
        gt=0,
        lt=1,
        description="Most of the context window the retrieved chunks may take.",
    )
    snippet_chars: int = Field(300, ge=20, description="Length of `sources[].text` snippets.")


class SearchLogSettings(Section):
    """The opt-in search log: queries, hits, citations and feedback (docs/feedback.md)."""

    enabled: bool = Field(
        False,
        description="Log every search and RAG answer (queries are stored) under "
        "data_dir/logs/search/, and accept POST /v1/feedback.",
    )
    max_bytes: int = Field(
        10 * 1024 * 1024, ge=4096, description="Size of the log file before it is rotated."
    )
    backups: int = Field(5, ge=1, le=1000, description="Rotated files kept besides the live one.")
    index_size: int = Field(
        10_000,
        ge=1,
        description="Recent events kept in memory for feedback lookups (older ones are read "
        "back from the log files).",
    )


class BatchSettings(Section):
    """The OpenAI Batch API for embeddings (docs/batch.md)."""

    enabled: bool = Field(
        True, description="Serve /v1/files and /v1/batches and run batches in the background."
    )
    max_file_bytes: int = Field(
        200 * 1024 * 1024,
        ge=1024,
        description="Largest file accepted by POST /v1/files (413 beyond it).",
    )
    max_lines: int = Field(
        50_000, ge=1, description="Most requests (JSONL lines) in one batch input file."
    )
    chunk_lines: int = Field(
        64,
        ge=1,
        le=10_000,
        description="Requests a running batch embeds together before it records its progress.",
    )
    background_batch_tokens: int = Field(
        128,
        ge=16,
        description="Padded-token budget of a batch's forward pass while interactive requests "
        "came in the last 5 s (an interactive request arriving mid-pass waits for it); with "
        "none, batches use the embedding's batch_max_tokens.",
    )
    max_errors_listed: int = Field(
        100, ge=1, description="Invalid lines listed in a batch's `errors` (all: its error file)."
    )


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
    search_log: SearchLogSettings = Field(
        default_factory=SearchLogSettings, description="Opt-in search log and feedback."
    )
    batch: BatchSettings = Field(
        default_factory=BatchSettings, description="The Batch API for embeddings."
    )
    jobs: JobsSettings = Field(
        default_factory=JobsSettings, description="Background indexing jobs (docs/jobs.md)."
    )
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
