"""The remote commands as the CLI runs them: one client, errors as exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from rag_appliance.remote.client import RemoteClient, unreachable

T = TypeVar("T")


@dataclass(frozen=True)
class Remote:
    """Which server, with which key, and how many tries per call."""

    server: str
    api_key: str | None
    attempts: int = 6

    @property
    def url(self) -> str:
        """The base URL without a trailing slash."""
        return self.server.rstrip("/")


async def _with_client(remote: Remote, work: Callable[[RemoteClient], Awaitable[T]]) -> T:
    async with RemoteClient(remote.server, remote.api_key, attempts=remote.attempts) as client:
        try:
            return await work(client)
        except httpx.TransportError as exc:
            raise unreachable(client.base_url, exc) from None


async def index_command(
    remote: Remote,
    paths: Sequence[str],
    collection: str,
    metadata: Mapping[str, Any],
    workers: int,
) -> int:
    """Upload files and folders; 1 when any file failed, 130 when interrupted."""
    from rag_appliance.remote.index import index_remote, report

    with _stopped_by_signals():
        try:
            summary = await _with_client(
                remote, lambda c: index_remote(c, paths, collection, metadata, workers)
            )
        except asyncio.CancelledError:  # before the uploads began: nothing was sent
            print("rag-appliance: interrupted", file=sys.stderr)
            return 130
    return report(summary, collection, remote.url)


@contextlib.contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM cancel the running command, which then reports what it did.

    Installed explicitly: a shell starts background jobs with SIGINT ignored, and a supervisor
    stops with SIGTERM; either way the uploads in flight are cancelled, not left to finish.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
            loop.add_signal_handler(sig, task.cancel)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def search_command(
    remote: Remote,
    query: str,
    collection: str,
    top_k: int,
    flt: Mapping[str, Any] | None,
) -> int:
    """Print the server's top hits for a query."""
    from rag_appliance.remote.search import print_hits, search_remote

    hits = await _with_client(remote, lambda c: search_remote(c, query, collection, top_k, flt))
    print_hits(hits)
    return 0


async def eval_command(
    remote: Remote,
    dataset: Path,
    collection: str,
    k: int,
    json_path: Path | None,
) -> int:
    """Index a BEIR folder through the server (what is missing) and print every mode's metrics."""
    from rag_appliance.remote.eval import compare_remote, index_corpus, print_rows
    from rag_appliance.retrieval.evaluation import load_beir

    data = load_beir(dataset)
    started = time.perf_counter()

    async def run(client: RemoteClient) -> Any:
        sent = await index_corpus(client, collection, data)
        return sent, await compare_remote(client, collection, data, k)

    sent, rows = await _with_client(remote, run)
    judged = sum(1 for q in data.qrels if q in data.queries)
    print(
        f"{len(data.corpus)} documents ({sent} indexed now), {judged} judged queries, "
        f"collection '{collection}' on {remote.url} in {time.perf_counter() - started:.1f}s"
    )
    print_rows(rows)
    result = {
        "dataset": str(dataset),
        "server": remote.url,
        "documents": len(data.corpus),
        "queries": judged,
        "k": k,
        "rows": {row.label: row.metrics for row in rows if row.metrics},
    }
    if json_path is not None:
        text = json.dumps(result, indent=2) + "\n"
        await asyncio.to_thread(json_path.write_text, text, encoding="utf-8")
    print(json.dumps(result["rows"]))
    return 0
