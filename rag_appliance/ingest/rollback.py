"""Store writes that land before a cancellation goes on, and the rollback of a call's chunks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from rag_appliance.collections.service import UNCOMMITTED, doc_filter
from rag_appliance.store.base import Filter, VectorStore

log = logging.getLogger(__name__)

T = TypeVar("T")


async def settled(call: Callable[..., T], *args: Any) -> T:
    """A blocking store call in a thread; cancelled, it first waits for the call to finish.

    A thread cannot be stopped: returning early would let a write land after the rollback.
    """
    task = asyncio.ensure_future(asyncio.to_thread(call, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


@asynccontextmanager
async def rolling_back(
    store: VectorStore, collection: str, doc_ids: Sequence[str]
) -> AsyncIterator[None]:
    """On any failure or cancellation, delete the uncommitted chunks of these documents.

    What this call wrote (and the old versions it hid) is never searchable, so deleting it
    leaves each document as a crash would, minus the leftovers; re-sending converges.
    """
    try:
        yield
    except BaseException:
        if doc_ids:
            stale = Filter(must=(*doc_filter(*doc_ids).must, *UNCOMMITTED.must))
            try:
                await settled(store.delete, collection, stale)
                log.info("rolled back the uncommitted chunks of %d documents", len(doc_ids))
            except Exception:  # the original error matters more; orphans are cleaned later
                log.exception("could not roll back %d documents in %r", len(doc_ids), collection)
        raise
