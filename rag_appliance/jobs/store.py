"""The jobs journal under data_dir/jobs/<job_id>/: state, spooled inputs, a per-item done log.

A job's directory holds `state.json` (written atomically: a temporary file renamed over it),
`items.jsonl` (one input per line: a document, or a spooled file's name and path), `files/`
(the uploaded files' bytes) and `done.jsonl` (one line per finished item, appended and synced
after each batch). A restart replays the done log and goes on with the items not in it; an
item indexed but not yet logged when the process died is indexed again, which the pipeline's
content-hash check answers as "unchanged". A directory without `state.json` is a submission
that never finished spooling: nothing was accepted, so it is deleted on load.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

log = logging.getLogger(__name__)

Kind = Literal["documents", "files"]
Status = Literal["queued", "running", "completed", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
# Failures kept with their messages (all are counted): the job object stays small.
MAX_FAILURES_LISTED = 100
_ID = re.compile(r"^job_[0-9a-f]{24}$")
_COPY_CHUNK = 1024 * 1024


class SpoolLimit(Exception):
    """A submission went over a byte limit while it was spooled."""


@dataclass
class Job:
    """One job's state (persisted) and counts (replayed from its done log)."""

    id: str
    kind: Kind
    collection: str
    owner: dict[str, Any] | None  # the creating key's grant; None: a trusted caller
    total: int
    created_at: int
    metadata: dict[str, Any] = field(default_factory=dict)
    chunking: dict[str, int | None] | None = None
    status: Status = "queued"
    started_at: int | None = None
    finished_at: int | None = None
    error: dict[str, Any] | None = None
    cancel_requested: bool = False
    done: set[int] = field(default_factory=set)
    indexed: int = 0
    unchanged: int = 0
    failed: int = 0
    chunks: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        """Whether the job reached an end state."""
        return self.status in FINISHED

    def state(self) -> dict[str, Any]:
        """What state.json holds (the counts live in the done log)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "collection": self.collection,
            "owner": self.owner,
            "total": self.total,
            "created_at": self.created_at,
            "metadata": self.metadata,
            "chunking": self.chunking,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
            "cancel_requested": self.cancel_requested,
        }

    def count(self, entry: dict[str, Any]) -> None:
        """Add one done-log entry to the counts."""
        index = int(entry["i"])
        if index in self.done:
            return
        self.done.add(index)
        status = entry.get("status")
        if status == "error":
            self.failed += 1
            if len(self.failures) < MAX_FAILURES_LISTED:
                self.failures.append(entry)
            return
        self.indexed += status == "indexed"
        self.unchanged += status == "unchanged"
        self.chunks += int(entry.get("chunks", 0))


@dataclass(frozen=True)
class Item:
    """One input of a job: its position and its spooled form."""

    index: int
    data: dict[str, Any]


def valid_id(job_id: str) -> bool:
    """Whether a string is a job id (anything else is never a path under the journal)."""
    return _ID.match(job_id) is not None


class Spool:
    """A job's inputs being written; `JobStore.commit` makes it a queued job."""

    def __init__(self, directory: Path, limit: int) -> None:
        self.directory = directory
        self.limit = limit
        self.bytes = 0
        self.count = 0
        (directory / "files").mkdir(parents=True)
        self._items = (directory / "items.jsonl").open("w", encoding="utf-8")

    def add_document(self, document: dict[str, Any]) -> None:
        """Spool one JSON document."""
        self._write(document)

    def add_file(self, name: str, media_type: str | None, source: IO[bytes]) -> None:
        """Copy one file's bytes into the spool (counted against the limit as they come)."""
        relative = f"files/{self.count:07d}"
        with (self.directory / relative).open("wb") as out:
            while chunk := source.read(_COPY_CHUNK):
                self.bytes += len(chunk)
                if self.bytes > self.limit:
                    raise SpoolLimit(f"the job's files are over {self.limit:,} bytes")
                out.write(chunk)
        self._write({"name": name, "media_type": media_type, "file": relative})

    def close(self) -> None:
        """Flush and sync the items file."""
        if not self._items.closed:
            self._items.flush()
            os.fsync(self._items.fileno())
            self._items.close()

    def _write(self, data: dict[str, Any]) -> None:
        self._items.write(json.dumps(data, ensure_ascii=False) + "\n")
        self.count += 1


class JobStore:
    """The journal of every job under one root (data_dir/jobs); created on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def new_id(self) -> str:
        """A fresh job id; ids sort in creation order (microseconds, then random)."""
        return f"job_{time.time_ns() // 1000:014x}{uuid.uuid4().hex[:10]}"

    def spool(self, job_id: str, limit: int) -> Spool:
        """Start spooling a job's inputs (its directory has no state.json until committed)."""
        return Spool(self.root / job_id, limit)

    def discard(self, job_id: str) -> None:
        """Delete a job's directory (a refused submission, or a pruned job)."""
        shutil.rmtree(self.root / job_id, ignore_errors=True)

    def commit(self, job: Job, spool: Spool) -> None:
        """Make a spooled submission a queued job (state.json written last)."""
        spool.close()
        job.total = spool.count
        self.save(job)

    def save(self, job: Job) -> None:
        """Write the job's state atomically (a crash leaves the old or the new file)."""
        directory = self.root / job.id
        temporary = directory / "state.json.tmp"
        with temporary.open("w", encoding="utf-8") as out:
            json.dump(job.state(), out, ensure_ascii=False)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, directory / "state.json")

    def record(self, job: Job, entries: list[dict[str, Any]]) -> None:
        """Append finished items to the done log (synced) and count them."""
        if not entries:
            return
        with (self.root / job.id / "done.jsonl").open("a", encoding="utf-8") as out:
            out.write("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries))
            out.flush()
            os.fsync(out.fileno())
        for entry in entries:
            job.count(entry)

    def items(self, job: Job) -> Iterator[Item]:
        """The job's inputs not yet in its done log, in order, read lazily."""
        path = self.root / job.id / "items.jsonl"
        if not path.exists():
            return
        with path.open(encoding="utf-8") as lines:
            for index, line in enumerate(lines):
                if index not in job.done:
                    yield Item(index, json.loads(line))

    def read_file(self, job: Job, item: Item) -> bytes:
        """A spooled file's bytes."""
        return (self.root / job.id / str(item.data["file"])).read_bytes()

    def file_size(self, job: Job, item: Item) -> int:
        """A spooled file's size in bytes."""
        return (self.root / job.id / str(item.data["file"])).stat().st_size

    def drop_inputs(self, job: Job) -> None:
        """Delete a finished job's spooled inputs (its state and done log stay)."""
        directory = self.root / job.id
        shutil.rmtree(directory / "files", ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (directory / "items.jsonl").unlink()

    def load_all(self) -> list[Job]:
        """Every committed job, oldest first; unfinished spools are deleted."""
        if not self.root.is_dir():
            return []
        jobs = []
        for directory in sorted(self.root.iterdir()):
            if not directory.is_dir() or not valid_id(directory.name):
                continue
            job = self._load(directory)
            if job is None:
                log.warning("jobs: deleting %s, a submission that never finished", directory)
                shutil.rmtree(directory, ignore_errors=True)
            else:
                jobs.append(job)
        jobs.sort(key=lambda j: j.id)
        return jobs

    def prune(self, jobs: list[Job], keep: int) -> list[Job]:
        """Delete the oldest finished jobs past `keep`; the jobs left."""
        finished = [j for j in jobs if j.finished]
        gone = {j.id for j in finished[: max(0, len(finished) - keep)]}
        for job_id in gone:
            self.discard(job_id)
        return [j for j in jobs if j.id not in gone]

    def _load(self, directory: Path) -> Job | None:
        try:
            state = json.loads((directory / "state.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        job = Job(
            id=state["id"],
            kind=state["kind"],
            collection=state["collection"],
            owner=state["owner"],
            total=state["total"],
            created_at=state["created_at"],
            metadata=state.get("metadata") or {},
            chunking=state.get("chunking"),
            status=state["status"],
            started_at=state.get("started_at"),
            finished_at=state.get("finished_at"),
            error=state.get("error"),
            cancel_requested=bool(state.get("cancel_requested")),
        )
        done = directory / "done.jsonl"
        if done.exists():
            with done.open(encoding="utf-8") as lines:
                for line in lines:
                    try:
                        job.count(json.loads(line))
                    except (ValueError, KeyError, TypeError):
                        # A torn last line (killed mid-append): that item is simply redone.
                        continue
        return job


def now() -> int:
    """Unix seconds, as the job object's timestamps are."""
    return int(time.time())
