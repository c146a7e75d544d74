"""`rag-appliance index PATH --server URL`: parallel, retried, resumable uploads to a server.

Resumable by content hash: every upload stores its file's sha256 in the document's metadata
(`source_sha256`), and a run first lists the collection's documents, skipping each file whose
document already holds that hash (and the run's --metadata). An interrupted run loses at most
the uploads in flight (the server rolls them back when the client goes), so a re-run indexes
only the remainder.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from rag_appliance.remote.client import RemoteClient, RemoteError, unreachable
from rag_appliance.remote.walk import WalkedFile, sha256_file, walk

HASH_KEY = "source_sha256"
# Whole-request refusals that every other file would get too: the run stops at the first.
FATAL_STATUSES = frozenset({401, 403, 409})
_PAGE = 1000


@dataclass(frozen=True)
class LocalFile:
    """A file to send: where it is, its document id on the server, its hash and size."""

    path: Any  # pathlib.Path; Any keeps the fakes of the unit tests plain
    name: str
    doc_id: str
    sha256: str
    size: int


@dataclass
class Summary:
    """What a run did, file by file counted."""

    indexed: int = 0
    unchanged: int = 0
    skipped: int = 0
    chunks: int = 0
    bytes_sent: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    fatal: RemoteError | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        """Files that failed (parse errors, refusals, unreadable files)."""
        return len(self.failures)


def already_indexed(
    file: LocalFile, stored: Mapping[str, Mapping[str, Any]], metadata: Mapping[str, Any]
) -> bool:
    """Whether the server's document of this file holds its bytes' hash and the run's metadata."""
    meta = stored.get(file.doc_id)
    if meta is None or meta.get(HASH_KEY) != file.sha256:
        return False
    return all(meta.get(key) == value for key, value in metadata.items())


def plan(
    files: Sequence[LocalFile],
    stored: Mapping[str, Mapping[str, Any]],
    metadata: Mapping[str, Any],
) -> tuple[list[LocalFile], list[LocalFile]]:
    """(files to upload, files to skip as already indexed)."""
    send: list[LocalFile] = []
    skip: list[LocalFile] = []
    for file in files:
        (skip if already_indexed(file, stored, metadata) else send).append(file)
    return send, skip


async def stored_documents(client: RemoteClient, collection: str) -> dict[str, dict[str, Any]]:
    """Every fully indexed document of the collection: id -> metadata ({} when it is missing)."""
    stored: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    path = f"/v1/collections/{_quote(collection)}/documents"
    while True:
        params: dict[str, Any] = {"limit": _PAGE} | ({"after": cursor} if cursor else {})
        response = await client.request("GET", path, params=params, ok=frozenset({404}))
        if response.status_code == 404:
            if _code(response) == "collection_not_found":
                return {}
            raise RemoteError.from_response(response)
        try:
            body = response.json()
            for doc in body["data"]:
                stored[str(doc["id"])] = doc.get("metadata") or {}
            cursor = body.get("next")
        except (KeyError, TypeError, ValueError, AttributeError):
            raise RemoteError(
                f"{client.base_url}{path} is not an appliance's document list", status=502
            ) from None
        if not cursor:
            return stored


def local_files(walked: Sequence[WalkedFile]) -> tuple[list[LocalFile], list[tuple[str, str]]]:
    """Hash each file (document id by the server's rule); unreadable files as failures."""
    from rag_appliance.ingest.files import safe_name  # the document-id rule, no model imports

    files: list[LocalFile] = []
    failures: list[tuple[str, str]] = []
    for item in walked:
        try:
            digest, size = sha256_file(item.path), item.path.stat().st_size
        except OSError as exc:
            failures.append((str(item.path), exc.strerror or str(exc)))
            continue
        files.append(LocalFile(item.path, item.name, safe_name(item.name), digest, size))
    return files, failures


async def upload(
    client: RemoteClient,
    collection: str,
    files: Sequence[LocalFile],
    metadata: Mapping[str, Any],
    summary: Summary,
    workers: int,
    on_done: Callable[[LocalFile], None] = lambda _: None,
) -> None:
    """Send each file in its own upload, `workers` at a time; outcomes counted in `summary`."""
    queue: Iterator[LocalFile] = iter(files)
    stop = asyncio.Event()

    async def worker() -> None:
        for file in queue:  # one shared iterator: each file goes to one worker
            if stop.is_set():
                return
            await _one(client, collection, file, metadata, summary)
            if summary.fatal is not None:
                stop.set()
            on_done(file)

    async with asyncio.TaskGroup() as group:
        for _ in range(max(1, min(workers, len(files)))):
            group.create_task(worker())


async def _one(
    client: RemoteClient,
    collection: str,
    file: LocalFile,
    metadata: Mapping[str, Any],
    summary: Summary,
) -> None:
    try:
        data = await asyncio.to_thread(file.path.read_bytes)
    except OSError as exc:
        summary.failures.append((str(file.path), exc.strerror or str(exc)))
        return
    form = {"collection": collection, "metadata": json.dumps({**metadata, HASH_KEY: file.sha256})}
    try:
        body = await client.json(
            "POST", "/v1/index/upload", files=[("files", (file.name, data))], data=form
        )
    except httpx.TransportError as exc:
        summary.fatal = summary.fatal or unreachable(client.base_url, exc)
        return
    except RemoteError as exc:
        if exc.status in FATAL_STATUSES:
            summary.fatal = summary.fatal or exc
        else:
            summary.failures.append((str(file.path), exc.message))
        return
    except ValueError:  # a 2xx that is not JSON: not an appliance
        summary.failures.append((str(file.path), "the server's answer is not JSON"))
        return
    summary.bytes_sent += len(data)
    try:
        outcome = body["files"][0]
        if outcome["status"] == "error":
            summary.failures.append((str(file.path), str(outcome["error"]["message"])))
            return
        chunks = int(outcome.get("chunks") or 0)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        summary.failures.append((str(file.path), f"not an upload result: {str(body)[:200]}"))
        return
    summary.chunks += chunks
    summary.indexed += outcome["status"] == "indexed"
    summary.unchanged += outcome["status"] == "unchanged"


async def index_remote(
    client: RemoteClient,
    paths: Sequence[str],
    collection: str,
    metadata: Mapping[str, Any],
    workers: int = 4,
    progress: bool = True,
) -> Summary:
    """Index files and folders through the server: hash, skip what it holds, upload the rest."""
    from tqdm import tqdm

    started = time.perf_counter()
    walked, missing = walk(paths)
    summary = Summary(failures=[(raw, "no such file or directory") for raw in missing])
    files, unreadable = await asyncio.to_thread(local_files, walked)
    summary.failures += unreadable
    try:
        stored = await stored_documents(client, collection)
    except httpx.TransportError as exc:
        summary.fatal = unreachable(client.base_url, exc)
        return summary
    except RemoteError as exc:
        summary.fatal = exc
        return summary
    send, skip = plan(files, stored, metadata)
    summary.skipped = len(skip)
    bar = tqdm(
        total=sum(f.size for f in send),
        unit="B",
        unit_scale=True,
        desc=f"uploading {len(send)} files to {collection}",
        disable=not progress or not send,
    )
    try:
        await upload(
            client, collection, send, metadata, summary, workers, lambda f: bar.update(f.size)
        )
    except asyncio.CancelledError:
        # Ctrl-C: in-flight uploads are cancelled (the server rolls them back); what finished
        # stays indexed and is skipped by the next run.
        summary.interrupted = True
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - started
    return summary


def report(summary: Summary, collection: str, base_url: str) -> int:
    """Print the failures and the one-line summary; the exit code."""
    for name, message in summary.failures:
        print(f"error: {name}: {message}", file=sys.stderr)
    print(
        f"{summary.indexed} indexed, {summary.unchanged} unchanged, {summary.skipped} skipped "
        f"(already indexed), {summary.failed} failed; {summary.chunks} chunks in "
        f"{summary.seconds:.1f}s into collection '{collection}' on {base_url}"
    )
    if summary.fatal is not None:
        print(f"rag-appliance: {summary.fatal.message}", file=sys.stderr)
        return 1
    if summary.interrupted:
        print("rag-appliance: interrupted; run it again to index the rest", file=sys.stderr)
        return 130
    return 1 if summary.failed else 0


def _quote(segment: str) -> str:
    from urllib.parse import quote

    return quote(segment, safe="")


def _code(response: httpx.Response) -> str | None:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
