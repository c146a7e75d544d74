"""Untrusted files parsed in worker processes that are killed past their time or memory limits.

A parser's worst case (a zip bomb, a pathological PDF) costs a worker, never the server: each
worker runs with an address-space limit (RLIMIT_AS), a CPU-time limit, a lower priority and a
death signal tied to the server; each file has a wall-clock limit after which its worker is
killed. Workers are spawned (never forked from a server holding model threads) on first use.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rag_appliance import heap
from rag_appliance.errors import (
    AppError,
    InvalidRequest,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from rag_appliance.ingest.limits import ParseLimits, too_complex
from rag_appliance.ingest.parsers import ParsedDocument, parse

if TYPE_CHECKING:
    from pebble import ProcessPool

    from rag_appliance.settings import IngestSettings

log = logging.getLogger(__name__)

# Files per worker before it is replaced: a parser's leaks and fragmentation do not pile up.
_TASKS_PER_WORKER = 50
_NICENESS = 5  # parsing yields the CPU to the event loop and the embedding thread
# A parse error with the peak this close to the memory limit was a failed allocation.
_CEILING = 0.95
_PR_SET_PDEATHSIG = 1
# The errors a worker may report, by name (exceptions with keyword fields do not pickle whole).
_ERRORS: dict[str, type[AppError]] = {
    cls.__name__: cls for cls in (InvalidRequest, PayloadTooLarge, UnsupportedMediaType)
}


@dataclass(frozen=True)
class _Failure:
    """A worker's AppError as plain values."""

    kind: str
    message: str
    code: str | None
    param: str | None


class ParseSandbox:
    """A lazily started pool of parse workers; `parse` awaits one file's text.

    The workers stop once no file has been parsed for `idle_s` (the next file starts them
    again, ~0.5 s): a large upload's hours of embedding do not keep them, nor their memory.
    """

    def __init__(
        self,
        limits: ParseLimits,
        workers: int,
        timeout_s: float,
        memory_mb: int,
        idle_s: float | None = None,
    ):
        self.limits = limits
        self.workers = workers
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.idle_s = idle_s
        self._pool: ProcessPool | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._busy = 0  # parses scheduled and not yet ended
        self._idle_timer: threading.Timer | None = None

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> ParseSandbox:
        """The sandbox sized by `ingest.parse_*`."""
        return cls(
            ParseLimits.from_settings(settings),
            settings.parse_workers,
            settings.parse_timeout_s,
            settings.parse_memory_mb,
            settings.parse_idle_s,
        )

    @property
    def running(self) -> bool:
        """Whether the worker pool is started."""
        return self._pool is not None

    async def parse(
        self, data: bytes, filename: str | None, media_type: str | None
    ) -> ParsedDocument:
        """One file's text, parsed in a worker; AppErrors (4xx) for bad or too costly files.

        Cancelling the caller (a client gone, a server stopping) kills the file's worker.
        """
        future = self._schedule(data, filename, media_type)
        del data  # the pool holds it until sent; a large file is not kept through the wait
        try:
            result = await asyncio.wrap_future(future)
        except concurrent.futures.TimeoutError:
            raise PayloadTooLarge(
                f"the file took longer than {self.timeout_s:g}s to parse "
                "(ingest.parse_timeout_s); it was stopped",
                code="parse_timeout",
            ) from None
        except concurrent.futures.CancelledError:
            if self._closed:
                raise ServiceUnavailable("the server is stopping") from None
            raise
        except (MemoryError, _expired()) as exc:
            log.info("parse worker for %r ended: %s: %s", filename, type(exc).__name__, exc)
            raise too_complex(
                f"the file needs more than the parse limits allow ({self.memory_mb} MiB, "
                f"{self.timeout_s:g}s: ingest.parse_memory_mb, ingest.parse_timeout_s)"
            ) from None
        finally:
            self._ended()
        if isinstance(result, _Failure):
            raise _ERRORS[result.kind](result.message, code=result.code, param=result.param)
        return result

    def close(self) -> None:
        """Stop the workers (a parse in progress is killed); idempotent."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            timer, self._idle_timer = self._idle_timer, None
        if timer is not None:
            timer.cancel()
        _stop(pool)

    def _schedule(
        self, data: bytes, filename: str | None, media_type: str | None
    ) -> concurrent.futures.Future[ParsedDocument | _Failure]:
        with self._lock:
            if self._closed:
                raise ServiceUnavailable("the server is stopping")
            if self._pool is None:
                self._pool = self._start()
            future = self._pool.schedule(
                run_parse, (data, filename, media_type, self.limits), timeout=self.timeout_s
            )
            self._busy += 1
            return future

    def _ended(self) -> None:
        """A parse ended: with none left, the workers stop after `idle_s` without another."""
        with self._lock:
            self._busy -= 1
            if self._busy or self.idle_s is None or self._closed:
                return
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            timer = self._idle_timer = threading.Timer(self.idle_s, self._stop_if_idle)
            timer.daemon = True
            timer.start()

    def _stop_if_idle(self) -> None:
        with self._lock:
            if self._busy or self._idle_timer is not threading.current_thread():
                return  # a parse came meanwhile (its end arms a new timer)
            pool, self._pool, self._idle_timer = self._pool, None, None
        if pool is not None:
            log.info("parse workers idle for %gs: stopping them", self.idle_s)
        _stop(pool)

    def _start(self) -> ProcessPool:
        import multiprocessing

        from pebble import ProcessPool

        # Each worker may use a file's time limit in CPU on every file it parses, and no more.
        cpu_s = math.ceil(self.timeout_s) * _TASKS_PER_WORKER + 5
        return ProcessPool(
            max_workers=self.workers,
            max_tasks=_TASKS_PER_WORKER,
            initializer=limit_worker,
            initargs=(self.memory_mb * 1024 * 1024, cpu_s),
            context=multiprocessing.get_context("spawn"),
        )


def _stop(pool: ProcessPool | None) -> None:
    if pool is not None:
        pool.stop()  # type: ignore[no-untyped-call]
        pool.join(timeout=5)


def _expired() -> type[Exception]:
    from pebble import ProcessExpired

    return ProcessExpired


def limit_worker(address_space: int, cpu_s: int) -> None:
    """Worker start: memory and CPU limits, a lower priority, and death with the server."""
    import os
    import resource

    heap.tune()  # a large file's copies are unmapped when freed, not kept for the next file
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
    os.nice(_NICENESS)
    try:  # Linux: a server killed by SIGKILL takes its workers with it
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def run_parse(
    data: bytes, filename: str | None, media_type: str | None, limits: ParseLimits
) -> ParsedDocument | _Failure:
    """In a worker: parse one file; its AppError as plain values."""
    before = _peak_share()
    try:
        return parse(data, filename, media_type, limits)
    except AppError as exc:
        # libxml2 and others report a failed allocation as a parse error ("unknown error"):
        # a parse that drove the worker to its address-space limit ran out of memory.
        if exc.code == "unreadable_file" and before < _CEILING <= _peak_share():
            exc = too_complex(
                "the file needs more memory to parse than the limit allows (ingest.parse_memory_mb)"
            )
        return _failure(exc)
    finally:
        # The worker lives on for more files: hand a large parse's freed heap back to the OS
        # instead of holding its peak until the worker is replaced.
        heap.trim()


def _peak_share() -> float:
    """The worker's peak virtual memory as a share of its limit (0 without either)."""
    import resource

    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # pragma: no cover - not Linux
        return 0.0
    peak = next(
        (line.split()[1] for line in status.splitlines() if line.startswith("VmPeak:")), None
    )
    if peak is None or limit <= 0:
        return 0.0
    return int(peak) * 1024 / limit


def _failure(exc: AppError) -> _Failure:
    kind = type(exc).__name__ if type(exc).__name__ in _ERRORS else InvalidRequest.__name__
    return _Failure(kind, exc.message, exc.code, exc.param)
