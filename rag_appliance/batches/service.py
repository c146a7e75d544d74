"""BatchService: files and batches as the API sees them, scoped to the key that made them."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from pathlib import Path
from typing import Any, BinaryIO

from rag_appliance.auth.access import current_principal
from rag_appliance.auth.keys import Principal
from rag_appliance.batches.files import FileStore, public
from rag_appliance.batches.journal import Journal, valid_id
from rag_appliance.batches.lines import INDEX, count_lines
from rag_appliance.errors import Conflict, InvalidRequest, NotFound, ServiceUnavailable
from rag_appliance.settings import BatchSettings

log = logging.getLogger(__name__)

ACTIVE = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
_DAY_S = 24 * 3600


def owner_of(principal: Principal | None) -> dict[str, Any] | None:
    """The identity recorded with a file or batch (None: a trusted in-process caller)."""
    if principal is None:
        return None
    return {"name": principal.name, "role": principal.role, "collections": [*principal.collections]}


def principal_of_owner(owner: dict[str, Any] | None) -> Principal | None:
    """The principal a batch runs as: the key that created it."""
    if owner is None:
        return None
    return Principal(owner["name"], owner["role"], tuple(owner["collections"]))


def visible(owner: dict[str, Any] | None) -> bool:
    """Whether the request's key may see an object: its own, or any for an admin key."""
    principal = current_principal()
    if principal is None or principal.is_admin:
        return True
    return owner == owner_of(principal)


class BatchService:
    """The file store and the batches' journals; the runner works through the active ones."""

    def __init__(self, settings: BatchSettings, data_dir: Path, *, can_index: bool) -> None:
        self.settings = settings
        self.files = FileStore(data_dir / "files")
        self.root = data_dir / "batches"  # created with the first batch
        self.can_index = can_index
        self.journals: dict[str, Journal] = {}
        for folder in sorted(self.root.iterdir()) if self.root.is_dir() else ():
            if valid_id(folder.name) and (folder / "state.json").exists():
                self.journals[folder.name] = Journal.load(folder)
        self.wakeup = asyncio.Event()

    # Files

    async def upload(self, stream: BinaryIO, filename: str, purpose: str) -> dict[str, Any]:
        """Store an uploaded batch input file (413 past the limit, 400 past max_lines)."""
        if purpose != "batch":
            raise InvalidRequest(
                f"purpose {purpose[:100]!r} is not supported: this server accepts 'batch' files",
                param="purpose",
                code="invalid_value",
            )
        record, tmp = await asyncio.to_thread(
            self.files.save,
            stream,
            filename=filename[:255] or "upload.jsonl",
            purpose=purpose,
            owner=owner_of(current_principal()),
            max_bytes=self.settings.max_file_bytes,
        )
        lines = await asyncio.to_thread(count_lines, tmp)
        if lines > self.settings.max_lines:
            self.files.discard(tmp)
            raise InvalidRequest(
                f"the file has {lines} requests; at most {self.settings.max_lines} are allowed"
                " per batch (batch.max_lines)",
                param="file",
            )
        return public(await asyncio.to_thread(self.files.commit, record, tmp))

    def file(self, file_id: str) -> dict[str, Any]:
        """A file's record the key may see, or a 404."""
        record = self.files.record(file_id)
        if not visible(record.get("owner")):
            raise NotFound(f"No such File object: {file_id}", param="file_id")
        return record

    def list_files(self, purpose: str | None) -> list[dict[str, Any]]:
        """The key's files, newest first."""
        return [
            public(r)
            for r in self.files.records()
            if visible(r.get("owner")) and (purpose is None or r["purpose"] == purpose)
        ]

    def file_path(self, file_id: str) -> Path:
        """Where a visible file's content is."""
        self.file(file_id)
        return self.files.path(file_id)

    def delete_file(self, file_id: str) -> dict[str, Any]:
        """Delete a file, unless an unfinished batch reads it (409)."""
        self.file(file_id)
        for journal in self.journals.values():
            state = journal.state
            if state["input_file_id"] == file_id and state["status"] in ACTIVE:
                raise Conflict(
                    f"the file {file_id} is the input of {state['id']}, which has not finished;"
                    " cancel the batch or wait for it",
                    param="file_id",
                )
        self.files.delete(file_id)
        return {"id": file_id, "object": "file", "deleted": True}

    # Batches

    def create(
        self, input_file_id: str, endpoint: str, metadata: dict[str, str] | None
    ) -> dict[str, Any]:
        """A new batch in `validating`; the runner picks it up."""
        try:
            record = self.file(input_file_id)
        except NotFound:
            raise NotFound(f"No such File object: {input_file_id}", param="input_file_id") from None
        if record["purpose"] != "batch":
            raise InvalidRequest(
                f"the file {input_file_id} has purpose {record['purpose']!r}; a batch's input"
                " must be uploaded with purpose 'batch'",
                param="input_file_id",
            )
        if endpoint == INDEX and not self.can_index:
            raise ServiceUnavailable("no vector store is configured: '/v1/index' batches need one")
        now = int(time.time())
        batch_id = "batch_" + secrets.token_hex(12)
        state: dict[str, Any] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": endpoint,
            "errors": None,
            "input_file_id": input_file_id,
            "completion_window": "24h",
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + _DAY_S,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": metadata,
            # Private: who runs it, and the ids its result files will be published under.
            "owner": owner_of(current_principal()),
            "planned_output_file_id": "file-" + secrets.token_hex(12),
            "planned_error_file_id": "file-" + secrets.token_hex(12),
        }
        self.root.mkdir(parents=True, exist_ok=True)
        journal = Journal.create(self.root, state)
        self.journals[batch_id] = journal
        self.wakeup.set()
        return state

    def batch(self, batch_id: str) -> dict[str, Any]:
        """A batch's state the key may see, or a 404."""
        journal = self.journals.get(batch_id) if valid_id(batch_id) else None
        if journal is None or not visible(journal.state.get("owner")):
            raise NotFound(f"No such Batch object: {batch_id}", param="batch_id")
        return journal.state

    def list(self, after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """The key's batches newest first, from after the `after` id; and whether more follow."""
        states = sorted(
            (j.state for j in self.journals.values() if visible(j.state.get("owner"))),
            key=lambda s: (s["created_at"], s["id"]),
            reverse=True,
        )
        if after is not None:
            ids = [s["id"] for s in states]
            states = states[ids.index(after) + 1 :] if after in ids else []
        return states[:limit], len(states) > limit

    def cancel(self, batch_id: str) -> dict[str, Any]:
        """Ask a batch to stop: results so far are kept (cancelling -> cancelled)."""
        state = self.batch(batch_id)
        if state["status"] in ("cancelling", "cancelled"):
            return state
        if state["status"] not in ACTIVE:
            raise Conflict(
                f"the batch {batch_id} is {state['status']} and cannot be cancelled",
                param="batch_id",
            )
        state["status"] = "cancelling"
        state["cancelling_at"] = int(time.time())
        self.journals[batch_id].save()
        self.wakeup.set()
        return state

    def next_active(self) -> Journal | None:
        """The oldest batch with work left."""
        active = [j for j in self.journals.values() if j.state["status"] in ACTIVE]
        return min(active, key=lambda j: (j.state["created_at"], j.state["id"]), default=None)
