"""The Jobs tab (running and recent indexing jobs, refreshed on a timer, Cancel) and large
uploads sent as a job instead of being indexed while the page waits.

Handlers act as the signed-in key: the list holds only jobs on collections it may read, Cancel
needs write access, and a job submitted here runs as that key (docs/jobs.md).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from rag_appliance.auth.access import authorize_write, current_principal
from rag_appliance.errors import InvalidRequest
from rag_appliance.jobs.protocol import job_object
from rag_appliance.jobs.store import Spool
from rag_appliance.jobs.submit import check_target, new_job, spooled, unique_names
from rag_appliance.ui import uploads
from rag_appliance.ui.base import Handlers, ServicesGetter, report

JOB_HEADERS = ["job", "collection", "status", "documents", "failed", "chunks", "docs/s", "ETA"]
REFRESH_S = 2.0
# An upload this large goes in the background: the page would wait minutes otherwise.
LARGE_UPLOAD_FILES = 20
LARGE_UPLOAD_BYTES = 32 * 1024 * 1024
RECENT = 50  # jobs shown

Upload = Callable[..., Awaitable[tuple[list[list[Any]], Any]]]


@dataclass
class JobsTab:
    """The jobs table, the picked job and its Cancel button, the refresh timer."""

    table: gr.Dataframe
    pick: gr.Dropdown
    cancel: gr.Button
    status: gr.Markdown
    timer: gr.Timer


def jobs_tab() -> JobsTab:
    """The Jobs tab's contents (built inside an open tab)."""
    gr.Markdown(
        "Indexing jobs of the collections this key may read (`POST /v1/index/jobs`, and "
        f"uploads of {LARGE_UPLOAD_FILES}+ files from the Documents tab); refreshed every "
        f"{REFRESH_S:g} s."
    )
    table = gr.Dataframe(
        headers=JOB_HEADERS,
        datatype=["str", "str", "str", "str", "number", "number", "number", "str"],
        interactive=False,
        label="Jobs (the newest first)",
        elem_id="jobs",
    )
    with gr.Row(equal_height=True):
        pick = gr.Dropdown(
            label="Job", choices=[], allow_custom_value=True, scale=3, elem_id="job-pick"
        )
        cancel = gr.Button("Cancel job", variant="stop", scale=1, elem_id="job-cancel")
    status = gr.Markdown(elem_id="jobs-status")
    return JobsTab(table, pick, cancel, status, gr.Timer(REFRESH_S))


class JobsActions(Handlers):
    """Listing and cancelling jobs, and the Documents tab's upload (large ones become jobs)."""

    def __init__(self, services: ServicesGetter, upload: Upload) -> None:
        super().__init__(services)
        self._upload = upload  # the synchronous upload, for everything not large

    async def jobs_listing(self, request: gr.Request | None = None) -> tuple[list[list[Any]], Any]:
        """The table's rows and the job picker's choices, as the signed-in key sees them."""
        try:
            with self.acting(request):
                runner = self.services().require_jobs()
                principal = current_principal()
                jobs = [
                    job
                    for job in runner.newest_first()
                    if principal is None or principal.can_read(job.collection)
                ][:RECENT]
                bodies = [job_object(job, runner.rates.get(job.id)) for job in jobs]
        except Exception as exc:
            report(exc, "jobs")
            return [], gr.skip()
        choices = [b["id"] for b in bodies if b["status"] in ("queued", "running")]
        return [_row(b) for b in bodies], gr.update(choices=choices)

    async def cancel_job(self, job_id: str | None, request: gr.Request | None = None) -> str:
        """Cancel the picked job (after its current batch, when it is running)."""
        try:
            with self.acting(request):
                if not job_id:
                    raise InvalidRequest("pick a running or queued job first")
                runner = self.services().require_jobs()
                job = runner.get(job_id.strip())
                authorize_write(job.collection)
                await runner.cancel(job)
        except Exception as exc:
            return report(exc, "cancel job")
        return f"Job `{job.id}`: {job_object(job, None)['status']}."

    async def upload(
        self,
        files: Sequence[str] | None,
        collection: str | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio injects it by this default
        request: gr.Request | None = None,
    ) -> tuple[list[list[Any]], Any]:
        """Index the files now, or, for a large upload, queue them as a job."""
        paths = [Path(f) for f in files or []]
        if not await asyncio.to_thread(_large, paths):
            return await self._upload(files, collection, progress, request)
        read = False
        try:
            with self.acting(request):
                if not collection:
                    raise InvalidRequest("choose or create a collection first")
                services = self.services()
                runner = services.require_jobs()
                names = unique_names([p.name for p in paths])
                await check_target(services, collection)
                job = new_job(runner, "files", collection, {}, None)
                read = True

                def fill(spool: Spool) -> None:
                    for name, path in zip(names, paths, strict=True):
                        with path.open("rb") as source:
                            spool.add_file(name, None, source)

                await spooled(runner, job, fill, services.settings.jobs.max_job_bytes)
                runner.submit(job)
        except Exception as exc:
            report(exc, "upload")
            return [], (None if read else gr.skip())
        finally:
            if read:
                await asyncio.to_thread(uploads.discard, paths, uploads.current_dir())
        gr.Info(f"{len(paths)} files queued as job {job.id}: see the Jobs tab.")
        row = [f"{len(paths)} files", "queued", 0, f"indexing in the background: job {job.id}"]
        return [row], None


def _large(paths: Sequence[Path]) -> bool:
    if len(paths) >= LARGE_UPLOAD_FILES:
        return True
    total = 0
    for path in paths:
        try:
            total += path.stat().st_size
        except OSError:
            continue  # the synchronous upload reports it
    return total >= LARGE_UPLOAD_BYTES


def _row(body: dict[str, Any]) -> list[Any]:
    docs = body["documents"]
    rate = body["rate"]
    eta = body["eta_s"]
    return [
        body["id"],
        body["collection"],
        body["status"],
        f"{docs['done'] + docs['failed']}/{docs['total']}",
        docs["failed"],
        body["chunks"],
        rate["documents_per_s"] if rate else None,
        str(dt.timedelta(seconds=round(eta))) if eta is not None else "",
    ]
