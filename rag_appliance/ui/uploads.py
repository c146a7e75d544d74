"""The UI's uploaded files: kept under data_dir, size-checked, deleted once indexed.

Gradio writes each upload to `GRADIO_TEMP_DIR/<sha>/<name>` (by default the system's temporary
folder, never cleaned). The appliance points it at `data_dir/ui-uploads`, empties that folder at
start (what a crash or an unused upload left), has Gradio delete uploads nobody indexed after
`ABANDONED_AGE_S`, and deletes the files of an Index press as soon as they have been read and
indexed, whether that went well or not. See docs/ui.md#uploads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from rag_appliance.errors import PayloadTooLarge
from rag_appliance.ingest.files import FileBlob, FileOutcome

log = logging.getLogger(__name__)

UPLOADS = "ui-uploads"
ENV = "GRADIO_TEMP_DIR"
# Uploads never indexed (a closed tab, a client that only uploads) are deleted by Gradio after
# this long, checked every SWEEP_EVERY_S, and all of them when the server stops.
ABANDONED_AGE_S = 3600
SWEEP_EVERY_S = 600


def upload_dir(data_dir: Path) -> Path:
    """Where the UI's uploads go: data_dir/ui-uploads, as an absolute path."""
    return (data_dir / UPLOADS).resolve()


def prepare(data_dir: Path) -> Path:
    """Empty data_dir/ui-uploads of an earlier run's leftovers and make it Gradio's folder.

    Process-wide: Gradio reads the variable when it builds the UI and again at each upload and
    each event's file check, so one process serves one UI's uploads (one data_dir).
    """
    root = upload_dir(data_dir)
    if root.exists():
        left = sum(1 for p in root.rglob("*") if p.is_file())
        shutil.rmtree(root, ignore_errors=True)
        if left:
            log.info("web UI: deleted %d uploaded files an earlier run left in %s", left, root)
    root.mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = str(root)
    return root


def current_dir() -> Path:
    """The folder Gradio puts uploads in now (its own default when `prepare` never ran)."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


def read(paths: Sequence[Path], limit: int) -> tuple[dict[int, FileOutcome], dict[int, FileBlob]]:
    """The files' bytes by position, and an error outcome for each one over `limit` bytes.

    Gradio refuses bigger files as they arrive (`max_file_size`); this holds for any it let by.
    """
    refused: dict[int, FileOutcome] = {}
    blobs: dict[int, FileBlob] = {}
    for slot, path in enumerate(paths):
        # Gradio keeps the original file name as the last part of its temporary path.
        size = path.stat().st_size
        if size > limit:
            refused[slot] = too_big(path.name, size, limit)
        else:
            blobs[slot] = FileBlob(path.name, path.read_bytes())
    return refused, blobs


def too_big(name: str, size: int, limit: int) -> FileOutcome:
    """The outcome of a file over the upload limit."""
    error = PayloadTooLarge(
        f"the file is {readable_size(size)}; uploads are limited to {readable_size(limit)}"
        " (ingest.max_upload_bytes)",
        param="files",
    )
    return FileOutcome(name, "error", error=error)


def readable_size(size: int) -> str:
    """Bytes as people read them: 512 bytes, 2.0 KiB, 3.4 MiB, 1.5 GiB."""
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def discard(paths: Iterable[Path], root: Path) -> int:
    """Delete these uploaded files and the folders they leave empty, only ever inside `root`;
    returns how many files went."""
    removed = 0
    for path in paths:
        target = Path(os.path.abspath(path))  # no symlink resolution: a link is removed itself
        if not target.is_relative_to(root) or target == root:
            continue  # not an upload: never delete what a client named elsewhere
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            target.unlink()
            removed += 1
        parent = target.parent
        while parent != root and parent.is_relative_to(root):
            try:
                parent.rmdir()  # Gradio's per-upload <sha> folder, once it is empty
            except OSError:
                break
            parent = parent.parent
    return removed
