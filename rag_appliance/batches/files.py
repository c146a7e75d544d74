"""The file store behind /v1/files: content plus a metadata JSON per file under data_dir/files."""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from rag_appliance.batches.storage import fsync_dir, read_json, write_json
from rag_appliance.errors import NotFound, PayloadTooLarge

_ID = re.compile(r"^file-[0-9a-f]{24}$")
_COPY_CHUNK = 1024 * 1024
# What the API shows of a record; "owner" stays on the server.
PUBLIC = ("id", "object", "bytes", "created_at", "filename", "purpose", "status", "expires_at")


def new_file_id() -> str:
    """A fresh OpenAI-style file id."""
    return "file-" + secrets.token_hex(12)


def public(record: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI File object of a record."""
    out = {k: record.get(k) for k in PUBLIC}
    out["status_details"] = None
    return out


class FileStore:
    """Files as `<id>` (content) and `<id>.json` (metadata); the metadata is written last."""

    def __init__(self, root: Path) -> None:
        self.root = root  # created on the first upload
        # An upload cut short by a crash left only its temp file.
        for tmp in root.glob("*.part"):
            tmp.unlink(missing_ok=True)

    def _content(self, file_id: str) -> Path:
        return self.root / file_id

    def _meta(self, file_id: str) -> Path:
        return self.root / f"{file_id}.json"

    def save(
        self,
        stream: BinaryIO,
        *,
        filename: str,
        purpose: str,
        owner: dict[str, Any] | None,
        max_bytes: int,
    ) -> tuple[dict[str, Any], Path]:
        """Copy an upload in (413 past `max_bytes`); returns the record and the content path.

        The record is not visible until `commit` writes its metadata.
        """
        file_id = new_file_id()
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f"{file_id}.part"
        size = 0
        try:
            with open(tmp, "wb") as out:
                while chunk := stream.read(_COPY_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise PayloadTooLarge(
                            f"the file is over the {max_bytes}-byte limit (batch.max_file_bytes)",
                            param="file",
                        )
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        record = {
            "id": file_id,
            "object": "file",
            "bytes": size,
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "expires_at": None,
            "owner": owner,
        }
        return record, tmp

    def commit(self, record: dict[str, Any], tmp: Path) -> dict[str, Any]:
        """Move a saved upload in place and publish its metadata."""
        os.replace(tmp, self._content(record["id"]))
        write_json(self._meta(record["id"]), record)
        return record

    def discard(self, tmp: Path) -> None:
        """Drop a saved upload that failed its checks."""
        tmp.unlink(missing_ok=True)

    def adopt(
        self, src: Path, file_id: str, *, filename: str, purpose: str, owner: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Publish an existing file (a batch's output) under a chosen id; safe to repeat."""
        if self._meta(file_id).exists():
            return self.record(file_id)
        dest = self._content(file_id)
        self.root.mkdir(parents=True, exist_ok=True)
        if src.exists():
            os.replace(src, dest)
            fsync_dir(self.root)
        record = {
            "id": file_id,
            "object": "file",
            "bytes": dest.stat().st_size,
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "expires_at": None,
            "owner": owner,
        }
        write_json(self._meta(file_id), record)
        return record

    def record(self, file_id: str) -> dict[str, Any]:
        """A file's record, or a 404 (also for ids that cannot be ours)."""
        meta = self._meta(file_id) if _ID.match(file_id) else None
        if meta is None or not meta.exists():
            raise NotFound(f"No such File object: {file_id}", param="file_id")
        value: dict[str, Any] = read_json(meta)
        return value

    def path(self, file_id: str) -> Path:
        """The content of a file that exists."""
        self.record(file_id)
        return self._content(file_id)

    def records(self) -> Iterator[dict[str, Any]]:
        """Every file's record, newest first."""
        found = []
        for meta in self.root.glob("file-*.json"):
            try:
                found.append(read_json(meta))
            except (OSError, ValueError):
                continue  # removed under us
        yield from sorted(found, key=lambda r: (r["created_at"], r["id"]), reverse=True)

    def delete(self, file_id: str) -> None:
        """Remove a file (metadata first, so a half-done delete leaves no visible file)."""
        self.record(file_id)
        self._meta(file_id).unlink(missing_ok=True)
        self._content(file_id).unlink(missing_ok=True)
