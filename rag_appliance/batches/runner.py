"""The batch runner: one asyncio task working through active batches on the background lane."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from pydantic import ValidationError

from rag_appliance.auth.access import acting_as, authorize_write
from rag_appliance.batches.journal import Journal
from rag_appliance.batches.lines import (
    INDEX,
    LineError,
    LineRequest,
    parse_line,
    read_lines,
    validate,
)
from rag_appliance.batches.service import ACTIVE, BatchService, principal_of_owner
from rag_appliance.embedding.batcher import background_lane
from rag_appliance.errors import AppError, InvalidRequest, error_body

if TYPE_CHECKING:
    from rag_appliance.embedding.service import EmbeddingService
    from rag_appliance.ingest.pipeline import IndexPipeline

log = logging.getLogger(__name__)

_DUMP = orjson.OPT_SERIALIZE_NUMPY
_INFLIGHT = 2  # chunks being embedded at once
T = TypeVar("T")


def _result_line(custom_id: str, status: int, body: dict[str, Any]) -> bytes:
    """An output (200) or error-file (other status) line, as OpenAI writes them."""
    return orjson.dumps(
        {
            "id": "batch_req_" + secrets.token_hex(12),
            "custom_id": custom_id,
            "response": {
                "status_code": status,
                "request_id": "req_" + secrets.token_hex(12),
                "body": body,
            },
            "error": None,
        },
        option=_DUMP,
    )


def _invalid_line(error: LineError) -> bytes:
    """An error-file line for a line that was never run."""
    return orjson.dumps(
        {
            "id": "batch_req_" + secrets.token_hex(12),
            "custom_id": error.custom_id,
            "response": None,
            "error": {"code": error.code, "message": error.message, "line": error.line},
        }
    )


def _validation_error(exc: ValidationError) -> AppError:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid body"}
    where = ".".join(str(p) for p in first.get("loc", ())) or "body"
    return InvalidRequest(f"Invalid '{where}': {first.get('msg')}", param=where.split(".")[0])


class BatchRunner:
    """Runs batches one at a time, chunk by chunk, recording progress in their journals."""

    def __init__(
        self,
        service: BatchService,
        embedding: EmbeddingService,
        pipeline: IndexPipeline | None = None,
        max_documents: int = 1000,
    ) -> None:
        self.service = service
        self.embedding = embedding
        self.pipeline = pipeline
        self.max_documents = max_documents  # ingest.max_documents_per_request, as /v1/index
        self._task: asyncio.Task[None] | None = None
        # The runner's file work on its own thread: never queued ahead of requests' to_thread.
        self._io = ThreadPoolExecutor(1, thread_name_prefix="batch-io")

    async def start(self) -> None:
        """Start working (resuming whatever a previous process left unfinished)."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="batch-runner")

    async def stop(self) -> None:
        """Stop at once: an unrecorded chunk is redone by the next start."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        # A write in progress finishes (the journal stays whole); a later start gets a new thread.
        await asyncio.to_thread(self._io.shutdown, True)
        self._io = ThreadPoolExecutor(1, thread_name_prefix="batch-io")

    async def _thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        call = functools.partial(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._io, call)

    async def _loop(self) -> None:
        background_lane.set(True)  # this task's embeddings always take the background lane
        wakeup = self.service.wakeup
        while True:
            journal = self.service.next_active()
            if journal is None:
                await wakeup.wait()
                wakeup.clear()
                continue
            try:
                await self._run(journal)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not stop every later batch
                log.exception("batch %s failed", journal.state["id"])
                self._fail(journal, "server_error", "the batch failed on the server")
            if journal.state["status"] in ACTIVE:  # never spin on a batch that cannot move
                self._fail(journal, "server_error", "the batch stopped without finishing")

    async def _run(self, journal: Journal) -> None:
        state = journal.state
        if state["status"] == "validating":
            await self._validate(journal)
        if state["status"] == "in_progress":
            await self._process(journal)
        if state["status"] in ("in_progress", "finalizing", "cancelling"):
            await self._thread(self._finish, journal)

    async def _validate(self, journal: Journal) -> None:
        state = journal.state
        path = self.service.files.path(state["input_file_id"])
        found = await self._thread(
            validate, path, state["endpoint"], self.service.settings.max_errors_listed
        )
        if found.listed:
            state["errors"] = {"object": "list", "data": found.listed}
        state["request_counts"] = {"total": found.total, "completed": 0, "failed": 0}
        if state["status"] == "cancelling":
            return
        if found.total == 0:
            self._fail(journal, "empty_file", "the input file has no requests")
        elif found.invalid == found.total:
            state["status"] = "failed"
            state["failed_at"] = int(time.time())
            journal.save()
        else:
            state["status"] = "in_progress"
            state["in_progress_at"] = int(time.time())
            journal.save()

    def _fail(self, journal: Journal, code: str, message: str) -> None:
        state = journal.state
        errors = state.get("errors") or {"object": "list", "data": []}
        errors["data"].append({"code": code, "message": message, "param": None, "line": None})
        state.update(errors=errors, status="failed", failed_at=int(time.time()))
        journal.save()

    async def _process(self, journal: Journal) -> None:
        state = journal.state
        path = self.service.files.path(state["input_file_id"])
        start = await self._thread(journal.resume)
        # Duplicates are judged against every earlier line, the ones done before a restart too.
        seen: set[str] = set()
        for number, raw in read_lines(path):
            if number > start:
                break
            parse_line(raw, number, state["endpoint"], seen)
        lines = read_lines(path, start)
        size = self.service.settings.chunk_lines
        counts = state["request_counts"]
        # Two chunks in flight: the next one is queued on the background lane while this one's
        # results are fsync'd, so the model never waits for the disk. Recorded in input order.
        inflight: collections.deque[tuple[int, asyncio.Future[list[tuple[bool, bytes]]]]]
        inflight = collections.deque()
        exhausted = False
        try:
            while True:
                while len(inflight) < _INFLIGHT and not exhausted:
                    if state["status"] != "in_progress":
                        break  # cancelling: what is in flight is still recorded
                    chunk = await self._thread(_take, lines, size)
                    if not chunk:
                        exhausted = True
                        break
                    parsed = [parse_line(raw, n, state["endpoint"], seen) for n, raw in chunk]
                    work = asyncio.gather(*(self._one(journal, p) for p in parsed))
                    inflight.append((chunk[-1][0], work))
                if not inflight:
                    return
                last, work = inflight.popleft()
                results = await work
                outputs = [line for ok, line in results if ok]
                errors = [line for ok, line in results if not ok]
                await self._thread(
                    journal.append,
                    outputs,
                    errors,
                    last,
                    completed=counts["completed"] + len(outputs),
                    failed=counts["failed"] + len(errors),
                    total=counts["total"],
                )
        finally:
            for _, work in inflight:  # stopping: unrecorded chunks are redone on resume
                work.cancel()

    async def _one(self, journal: Journal, parsed: LineRequest | LineError) -> tuple[bool, bytes]:
        if isinstance(parsed, LineError):
            return False, _invalid_line(parsed)
        try:
            if journal.state["endpoint"] == INDEX:
                principal = principal_of_owner(journal.state.get("owner"))
                with contextlib.ExitStack() as stack:
                    if principal is not None:  # the key that created the batch, its scopes
                        stack.enter_context(acting_as(principal))
                    body = await self._index(parsed.body)
            else:
                body = await self._embed(parsed.body)
        except AppError as exc:
            return False, _result_line(parsed.custom_id, exc.status, exc.body())
        except ValidationError as exc:
            error = _validation_error(exc)
            return False, _result_line(parsed.custom_id, error.status, error.body())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("batch request %r failed", parsed.custom_id)
            body = error_body("The server had an error processing this request.", "server_error")
            return False, _result_line(parsed.custom_id, 500, body)
        return True, _result_line(parsed.custom_id, 200, body)

    async def _embed(self, raw: dict[str, Any]) -> dict[str, Any]:
        from rag_appliance.protocol.embeddings import EmbeddingRequest, embedding_response

        request = EmbeddingRequest.model_validate(raw)
        model = self.embedding.check_model(request.model)
        result = await self.embedding.embed(request.to_params())
        return embedding_response(result, model, request.encoding_format)

    async def _index(self, raw: dict[str, Any]) -> dict[str, Any]:
        from rag_appliance.protocol.index import IndexRequest, index_response

        request = IndexRequest.model_validate(raw)
        authorize_write(request.collection)
        if self.pipeline is None:
            raise InvalidRequest("no vector store is configured")
        documents = request.to_documents()
        most = self.max_documents
        if not documents or len(documents) > most:
            raise InvalidRequest(f"between 1 and {most} documents per request", param="documents")
        chunking = request.chunking
        params = self.pipeline.chunking(
            chunking.max_tokens if chunking else None,
            chunking.overlap_tokens if chunking else None,
        )
        results = await self.pipeline.index(request.collection, documents, params)
        return index_response(request.collection, results)

    def _finish(self, journal: Journal) -> None:
        """Publish the result files and end the batch (each step safe to repeat)."""
        state = journal.state
        cancelled = state["status"] == "cancelling"
        if not cancelled and state["status"] != "finalizing":
            state["status"] = "finalizing"
            state["finalizing_at"] = int(time.time())
            journal.save()
        journal.resume()  # drops anything past the last recorded chunk
        files, batch_id, owner = self.service.files, state["id"], state.get("owner")
        output = files.adopt(
            journal.output_path,
            state["planned_output_file_id"],
            filename=f"{batch_id}_output.jsonl",
            purpose="batch_output",
            owner=owner,
        )
        error_id = None
        if journal.progress["error_bytes"] > 0:
            error_id = files.adopt(
                journal.errors_path,
                state["planned_error_file_id"],
                filename=f"{batch_id}_error.jsonl",
                purpose="batch_output",
                owner=owner,
            )["id"]
        now = int(time.time())
        state.update(output_file_id=output["id"], error_file_id=error_id)
        if cancelled:
            state.update(status="cancelled", cancelled_at=now)
        else:
            state.update(status="completed", completed_at=now)
        journal.save()


def _take(lines: Iterator[tuple[int, bytes]], n: int) -> list[tuple[int, bytes]]:
    return list(itertools.islice(lines, n))
