"""Milvus Lite stores for the contract suite: one Lite instance per session, a fresh collection
prefix per store.

A Lite file per store costs ~0.13 s (its server started in-process, then flushed and stopped)
on each of the ~160 contract tests that run on milvus; with one shared instance a store is one
prefix, and closing it drops its collections. Lite runs in threads of this process, so nothing
outlives the session; the instance is stopped and its folder removed at exit. The persistence
tests (tests/integration/store/test_milvus.py) open their own Lite files.
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
from pathlib import Path

from pymilvus import MilvusClient

from rag_appliance.store.base import VectorStore
from rag_appliance.store.milvus import MilvusStore
from rag_appliance.store.milvus_client import connect_lite, release_lite

_COUNTER = itertools.count()
_SHARED: dict[Path, MilvusClient] = {}


class SharedLiteStore(MilvusStore):
    """A MilvusStore on the shared Lite instance; close drops its collections only."""

    def close(self) -> None:
        for info in self.list_collections():
            self.delete_collection(info.name)


def milvus_store(tmp: Path) -> VectorStore:
    """A store with a prefix of its own on the session's Milvus Lite (`tmp` is unused)."""
    client, path = _shared()
    return SharedLiteStore(client, prefix=f"t{next(_COUNTER)}_", lite_path=path)


def _shared() -> tuple[MilvusClient, Path]:
    if not _SHARED:
        folder = Path(tempfile.mkdtemp(prefix="milvus-contract-"))
        path = folder / "shared.db"
        _SHARED[path] = connect_lite(path)

        def stop() -> None:
            _SHARED.pop(path).close()
            release_lite(path)
            shutil.rmtree(folder, ignore_errors=True)

        atexit.register(stop)
    ((path, client),) = _SHARED.items()
    return client, path
