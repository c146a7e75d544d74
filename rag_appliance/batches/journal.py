"""A batch's journal under data_dir/batches/<id>/: its state JSON and append-only results.

Results are appended a chunk at a time: the output and error lines are written and fsync'd,
then the state records the next input line and both files' sizes. A restart truncates the
files to the recorded sizes (dropping lines of a chunk that was not recorded, and any torn
line) and resumes at the recorded line, so every input line has exactly one result.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

from rag_appliance.batches.storage import fsync_dir, read_json, write_json

_ID = re.compile(r"^batch_[0-9a-f]{24}$")
STATE = "state.json"
OUTPUT = "output.jsonl"
ERRORS = "errors.jsonl"


def valid_id(batch_id: str) -> bool:
    """Whether `batch_id` has the shape of this server's batch ids (nothing else is a path)."""
    return bool(_ID.match(batch_id))


class Journal:
    """One batch's durable state and results."""

    def __init__(self, folder: Path, state: dict[str, Any]) -> None:
        self.folder = folder
        self.state = state
        # Saves come from the event loop (cancel) and the runner's thread (progress): the one
        # that serialises later also renames later.
        self._lock = threading.Lock()

    @classmethod
    def create(cls, root: Path, state: dict[str, Any]) -> Journal:
        """A new batch's folder with its first state (written before the batch is visible)."""
        folder = root / state["id"]
        folder.mkdir(parents=True)
        journal = cls(folder, state)
        journal.save()
        fsync_dir(root)
        return journal

    @classmethod
    def load(cls, folder: Path) -> Journal:
        """The journal in `folder`."""
        return cls(folder, read_json(folder / STATE))

    @property
    def output_path(self) -> Path:
        """The successful results, in input order."""
        return self.folder / OUTPUT

    @property
    def errors_path(self) -> Path:
        """The failed requests and invalid lines, in input order."""
        return self.folder / ERRORS

    @property
    def progress(self) -> dict[str, Any]:
        """{next_line, output_bytes, error_bytes}: what the results files hold for certain."""
        value: dict[str, Any] = self.state.setdefault(
            "progress", {"next_line": 0, "output_bytes": 0, "error_bytes": 0}
        )
        return value

    def save(self) -> None:
        """Write the state atomically."""
        with self._lock:
            write_json(self.folder / STATE, self.state)

    def resume(self) -> int:
        """Cut the results back to the last recorded chunk; the input line to go on from."""
        progress = self.progress
        for path, size in (
            (self.output_path, progress["output_bytes"]),
            (self.errors_path, progress["error_bytes"]),
        ):
            if size and not path.exists():
                continue  # already published as a file (a restart while finalizing)
            with open(path, "ab") as f:
                if f.tell() != size:
                    f.truncate(size)
                    f.flush()
                    os.fsync(f.fileno())
        return int(progress["next_line"])

    def append(
        self, outputs: list[bytes], errors: list[bytes], next_line: int, **counts: int
    ) -> None:
        """Record one chunk's results, then the progress past them (the commit point)."""
        progress = self.progress
        for path, lines, key in (
            (self.output_path, outputs, "output_bytes"),
            (self.errors_path, errors, "error_bytes"),
        ):
            if lines:
                with open(path, "ab") as f:
                    f.write(b"".join(line + b"\n" for line in lines))
                    f.flush()
                    os.fsync(f.fileno())
                    progress[key] = f.tell()
        progress["next_line"] = next_line
        self.state.setdefault("request_counts", {}).update(counts)
        self.save()
