"""Creating a job: its record, its inputs spooled to the journal, the checks made first.

Shared by the HTTP routes and the web UI's large uploads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from rag_appliance.auth.access import authorize_write, current_principal
from rag_appliance.errors import CollectionNotFound, InvalidRequest, PayloadTooLarge
from rag_appliance.ingest.files import safe_name
from rag_appliance.jobs.runner import JobRunner
from rag_appliance.jobs.store import Job, Kind, Spool, SpoolLimit, now
from rag_appliance.services import Services


def new_job(
    runner: JobRunner,
    kind: Kind,
    collection: str,
    metadata: dict[str, Any],
    chunking: dict[str, int | None] | None,
) -> Job:
    """A queued job's record, owned by the acting key (its grant is what the job runs as)."""
    principal = current_principal()
    owner = (
        {"name": principal.name, "role": principal.role, "collections": list(principal.collections)}
        if principal is not None
        else None
    )
    return Job(
        id=runner.store.new_id(),
        kind=kind,
        collection=collection,
        owner=owner,
        total=0,
        created_at=now(),
        metadata=metadata,
        chunking=chunking,
    )


async def spooled(runner: JobRunner, job: Job, fill: Callable[[Spool], None], limit: int) -> Job:
    """Spool the inputs (in a thread) and commit the job; nothing is left of a refused one."""

    def work() -> None:
        spool = runner.store.spool(job.id, limit)
        try:
            fill(spool)
            runner.store.commit(job, spool)
        finally:
            spool.close()

    try:
        await asyncio.to_thread(work)
    except SpoolLimit as exc:
        await asyncio.to_thread(runner.store.discard, job.id)
        raise PayloadTooLarge(f"{exc} (jobs.max_job_bytes)") from None
    except BaseException:
        await asyncio.to_thread(runner.store.discard, job.id)
        raise
    return job


async def check_target(services: Services, collection: str) -> None:
    """403/400/409 now, before anything is spooled, as the synchronous routes answer."""
    # As the synchronous routes: the key may write, and the name is one the store takes and
    # not another model's collection, before anything is spooled (a missing one is created).
    authorize_write(collection)
    with contextlib.suppress(CollectionNotFound):
        await services.require_collections().check(collection)


def unique_names(filenames: Sequence[str | None]) -> list[str]:
    """The files' document ids (their cleaned names); 400 when two are the same."""
    # A file's document id is its cleaned name: two files with one id would collapse silently.
    names: list[str] = []
    seen: set[str] = set()
    for i, filename in enumerate(filenames):
        name = safe_name(filename)
        if name in seen:
            raise InvalidRequest(
                f"two files are named {name!r}: file names must be unique in one job",
                param=f"files[{i}]",
                code="duplicate_id",
            )
        names.append(name)
        seen.add(name)
    return names
