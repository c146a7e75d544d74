"""Durable small-file writes: fsync'd temp file, atomic rename, fsync'd folder."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import orjson


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in `folder` survive a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, value: Any) -> None:
    """Replace `path` with `value` as JSON, all or nothing even if the process dies midway."""
    # One temp name per thread: the runner's thread and the event loop may both save a state.
    tmp = path.with_name(f"{path.name}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(orjson.dumps(value))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_json(path: Path) -> Any:
    """The JSON value stored at `path`."""
    return orjson.loads(path.read_bytes())
