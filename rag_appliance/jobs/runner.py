"""The jobs runner: asyncio workers started with the services, indexing jobs batch by batch.

Each batch goes through the synchronous routes' own paths (`IndexPipeline.index` for documents,
`ingest.files.index_files` for files), as the key that created the job (`acting_as`), so its
scopes hold. A batch is committed by the pipeline before its items enter the done log; a cancel
is looked at between batches, so a document is never left half-written: the pipeline commits it
whole or, interrupted by a stop, rolls its uncommitted chunks back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rag_appliance.auth.access import PermissionDenied, acting_as
from rag_appliance.auth.keys import KeyRing, Principal
from rag_appliance.embedding.batcher import background_lane
from rag_appliance.errors import AppError, Conflict, NotFound, ServiceUnavailable
from rag_appliance.ingest.chunking import ChunkingParams, doc_id_from_content
from rag_appliance.ingest.files import FileBlob, index_files
from rag_appliance.ingest.pipeline import Document
from rag_appliance.jobs.settings import JobsSettings
from rag_appliance.jobs.store import Item, Job, JobStore, now

if TYPE_CHECKING:
    from rag_appliance.ingest.pipeline import IndexPipeline

log = logging.getLogger(__name__)

# Errors about the collection or the key, not one item: they end the whole job.
_JOB_LEVEL = (PermissionDenied, Conflict, ServiceUnavailable)
# Bytes of spooled files read for one batch (at least one file): a cap on the batch's memory.
_BATCH_FILE_BYTES = 64 * 1024 * 1024
_INTERNAL = "The server had an error while running the job; the details are in the server log."


class JobNotFound(NotFound):
    """404 for an unknown job id."""

    code = "job_not_found"


@dataclass
class Rate:
    """Items and chunks finished since the job (re)started in this process."""

    started: float = field(default_factory=time.monotonic)
    items: int = 0
    chunks: int = 0

    def per_second(self) -> tuple[float, float]:
        """Documents/s and chunks/s so far."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return self.items / elapsed, self.chunks / elapsed


class JobRunner:
    """Owns the journal's jobs in memory and the workers that run them."""

    def __init__(
        self,
        store: JobStore,
        pipeline: Callable[[], IndexPipeline],
        settings: JobsSettings,
        api_keys: Sequence[Any] = (),
    ) -> None:
        self.store = store
        self.settings = settings
        self._pipeline = pipeline
        self._keys = KeyRing(api_keys)
        self.jobs: dict[str, Job] = {}
        self.rates: dict[str, Rate] = {}
        self._queue: asyncio.Queue[str] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._closing: set[asyncio.Future[None]] = set()

    async def start(self) -> None:
        """Load the journal and resume every unfinished job (in creation order)."""
        self._queue = asyncio.Queue()
        jobs = await asyncio.to_thread(self.store.load_all)
        jobs = await asyncio.to_thread(self.store.prune, jobs, self.settings.keep_finished)
        for job in jobs:
            self.jobs[job.id] = job
            if not job.finished:
                log.info(
                    "jobs: resuming %s (%d of %d items done)", job.id, len(job.done), job.total
                )
                self._queue.put_nowait(job.id)
        self._workers = [
            asyncio.create_task(self._work(), name=f"index-jobs-{n}")
            for n in range(self.settings.concurrency)
        ]

    async def stop(self) -> None:
        """Stop the workers; a job interrupted mid-batch is rolled back and resumed next start."""
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
        await asyncio.gather(*self._closing, return_exceptions=True)

    def submit(self, job: Job) -> None:
        """Queue a committed job."""
        if self._queue is None:
            raise ServiceUnavailable("the jobs runner is not running")
        self.jobs[job.id] = job
        self._queue.put_nowait(job.id)

    def get(self, job_id: str) -> Job:
        """A job by id, or a 404."""
        job = self.jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no indexing job '{job_id}'", param="job_id")
        return job

    def newest_first(self) -> list[Job]:
        """Every job, the newest first."""
        return sorted(self.jobs.values(), key=lambda j: j.id, reverse=True)

    async def cancel(self, job: Job) -> Job:
        """Cancel a job: a queued one at once, a running one after its current batch."""
        if job.finished:
            return job
        job.cancel_requested = True
        if job.status == "queued":
            await self._finish(job, "cancelled")
        else:
            await asyncio.to_thread(self.store.save, job)
        return job

    async def _work(self) -> None:
        assert self._queue is not None
        # Bulk work: a job's embeddings wait for gaps in interactive traffic, as batches do.
        background_lane.set(True)
        while True:
            job = self.jobs.get(await self._queue.get())
            if job is not None and not job.finished:
                await self._run(job)

    async def _run(self, job: Job) -> None:
        if job.cancel_requested:
            await self._finish(job, "cancelled")
            return
        try:
            principal = self._principal(job)
        except PermissionDenied as exc:
            await self._finish(job, "failed", exc)
            return
        job.status = "running"
        job.started_at = job.started_at or now()
        await asyncio.to_thread(self.store.save, job)
        rate = self.rates[job.id] = Rate()
        try:
            with acting_as(principal) if principal is not None else contextlib.nullcontext():
                for batch in self._batches(job):
                    if job.cancel_requested:
                        break
                    entries = await self._batch(job, batch)
                    await asyncio.to_thread(self.store.record, job, entries)
                    rate.items += len(entries)
                    rate.chunks += sum(int(e.get("chunks", 0)) for e in entries)
        except asyncio.CancelledError:
            raise  # the server is stopping: the job stays running on disk and resumes
        except AppError as exc:
            await self._finish(job, "failed", exc)
            return
        except Exception:
            log.exception("jobs: %s failed", job.id)
            await self._finish(job, "failed", ServiceUnavailable(_INTERNAL))
            return
        await self._finish(job, "cancelled" if job.cancel_requested else "completed")

    def _principal(self, job: Job) -> Principal | None:
        """Who the job runs as: its creator's grant, while a configured key still grants it."""
        if not self._keys:
            return None  # no keys: the API is open, every caller may do anything
        owner = job.owner
        grant = (
            Principal(owner["name"], owner["role"], tuple(owner["collections"]))
            if owner is not None
            else None
        )
        if grant is None or grant not in self._keys.principals:
            raise PermissionDenied(
                "the API key that created this job is no longer configured (server.api_keys)",
                param="collection",
            )
        return grant

    def _batches(self, job: Job) -> Iterator[list[Item]]:
        batch: list[Item] = []
        size = 0
        for item in self.store.items(job):
            batch.append(item)
            if job.kind == "files":
                size += self.store.file_size(job, item)
            if len(batch) >= self.settings.batch_items or size >= _BATCH_FILE_BYTES:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    async def _batch(self, job: Job, batch: list[Item]) -> list[dict[str, Any]]:
        """Index one batch; an item's own error fails that item only (it is retried alone)."""
        try:
            return await self._index(job, batch)
        except _JOB_LEVEL:
            raise
        except AppError as exc:
            if len(batch) == 1:
                return [_error_entry(batch[0].index, _name(job, batch[0]), exc)]
        entries: list[dict[str, Any]] = []
        for item in batch:  # one bad document refuses a whole pipeline call: find it
            try:
                entries += await self._index(job, [item])
            except _JOB_LEVEL:
                raise
            except AppError as exc:
                entries.append(_error_entry(item.index, _name(job, item), exc))
        return entries

    async def _index(self, job: Job, batch: list[Item]) -> list[dict[str, Any]]:
        pipeline = self._pipeline()
        params = self._params(job, pipeline)
        if job.kind == "files":
            return await self._index_files(job, batch, pipeline, params)
        docs = [_document(item.data) for item in batch]
        results = await pipeline.index(job.collection, docs, params)
        by_id = {r.doc_id: r for r in results}
        entries = []
        for item, doc in zip(batch, docs, strict=True):
            result = by_id[doc.id or doc_id_from_content(doc.text)]
            entries.append(_entry(item.index, result.doc_id, result.status, result.chunks))
        return entries

    async def _index_files(
        self, job: Job, batch: list[Item], pipeline: IndexPipeline, params: ChunkingParams | None
    ) -> list[dict[str, Any]]:
        blobs = []
        for item in batch:
            data = await asyncio.to_thread(self.store.read_file, job, item)
            blobs.append(FileBlob(str(item.data["name"]), data, item.data.get("media_type")))
        outcomes = await index_files(pipeline, job.collection, blobs, job.metadata, params)
        entries = []
        for item, outcome in zip(batch, outcomes, strict=True):
            if outcome.error is not None:
                entries.append(_error_entry(item.index, outcome.filename, outcome.error))
            else:
                entries.append(
                    _entry(item.index, outcome.doc_id or "", outcome.status, outcome.chunks)
                )
        return entries

    def _params(self, job: Job, pipeline: IndexPipeline) -> ChunkingParams | None:
        if not job.chunking:
            return None
        return pipeline.chunking(job.chunking.get("max_tokens"), job.chunking.get("overlap_tokens"))

    async def _finish(self, job: Job, status: str, error: AppError | None = None) -> None:
        job.status = status  # type: ignore[assignment]
        job.finished_at = now()
        if error is not None:
            job.error = {"status": error.status, **error.body()["error"]}
        # Shielded, and waited for by stop(): a stop never leaves the end state unwritten.
        closing = asyncio.ensure_future(asyncio.to_thread(self._close, job))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        await asyncio.shield(closing)
        log.info("jobs: %s %s (%d done, %d failed)", job.id, status, len(job.done), job.failed)

    def _close(self, job: Job) -> None:
        self.store.save(job)
        self.store.drop_inputs(job)
        kept = {
            j.id for j in self.store.prune(self.newest_first()[::-1], self.settings.keep_finished)
        }
        for job_id in [j for j in self.jobs if j not in kept]:
            self.jobs.pop(job_id, None)
            self.rates.pop(job_id, None)


def _document(data: dict[str, Any]) -> Document:
    return Document(
        text=str(data["text"]),
        id=data.get("id"),
        metadata=dict(data.get("metadata") or {}),
        source=data.get("source"),
    )


def _name(job: Job, item: Item) -> str | None:
    key = "name" if job.kind == "files" else "id"
    value = item.data.get(key)
    return str(value) if value is not None else None


def _entry(index: int, doc_id: str, status: str, chunks: int) -> dict[str, Any]:
    return {"i": index, "id": doc_id, "status": status, "chunks": chunks}


def _error_entry(index: int, name: str | None, exc: AppError) -> dict[str, Any]:
    return {
        "i": index,
        "id": name,
        "status": "error",
        "error": {"status": exc.status, **exc.body()["error"]},
    }
