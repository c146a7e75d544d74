"""The `jobs` settings section: limits of background indexing jobs and how many run at once."""

from __future__ import annotations

from pydantic import Field

from rag_appliance.settings_engines import Section


class JobsSettings(Section):
    """Background indexing jobs (POST /v1/index/jobs, docs/jobs.md)."""

    max_job_bytes: int = Field(
        2 * 1024 * 1024 * 1024,
        ge=1024,
        description="Largest multipart body of one job (its files are spooled to disk; 413).",
    )
    max_json_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Largest JSON body of one job (parsed in memory, then spooled; 413).",
    )
    max_items: int = Field(
        100_000, ge=1, description="Most documents or files in one job (400 beyond it)."
    )
    concurrency: int = Field(
        1, ge=1, le=16, description="Jobs indexed at the same time (they share the embedder)."
    )
    batch_items: int = Field(
        128,
        ge=1,
        description="Documents or files per pipeline call and per done-log entry; a cancel "
        "waits for the batch in flight (smaller: finer progress, lower throughput).",
    )
    keep_finished: int = Field(
        200, ge=1, description="Finished jobs kept in the journal (the oldest are deleted)."
    )
