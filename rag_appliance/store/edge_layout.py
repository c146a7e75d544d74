"""The embedded store's files: directory layout, collection.json, the store lock, crash cleanup.

Layout under the store's `path`::

    .lock                          flock: one process per store (a shard's files have one owner)
    collections/<name>/
        collection.json            provenance, BM25 config, created_at, the live shard directory
        shard-<hex>/               the live EdgeShard (segments + WAL)
    collections/.trash-<hex>/      a collection being deleted (renamed first, then removed)

collection.json is the commit point of every change to a collection's files: it is written
last when a collection is created and replaced atomically (os.replace) when an index build or
enable_sparse swaps in a new shard, so a crash at any step leaves one complete live shard.
Whatever it does not name (an interrupted build or enable_sparse, the shard a finished one
replaced, a create that died before writing it, a delete that died before its rmtree) is
deleted when the store opens (`scan`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import subprocess
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from rag_appliance.errors import InvalidRequest, ServiceUnavailable
from rag_appliance.store.base import Bm25Config, Provenance
from rag_appliance.store.provenance import (
    bm25_from_dict,
    bm25_to_dict,
    provenance_from_dict,
    provenance_to_dict,
)
from rag_appliance.store.validation import check_collection_name

log = logging.getLogger(__name__)

META = "collection.json"
SHARD_PREFIX = "shard-"
TRASH_PREFIX = ".trash-"  # never a valid collection name, so it cannot collide with one
FORMAT = 1


@dataclass(eq=False)
class EdgeCollection:
    """A known collection: its metadata, its shard once opened, and index-build state."""

    name: str
    dir: Path
    provenance: Provenance
    created_at: str
    shard_name: str
    # The BM25 sparse vectors' config; None for a dense-only collection (made before them).
    bm25: Bm25Config | None = None
    # Dense vectors in HNSW segments when the live shard was built (see edge_hnsw.indexed).
    indexed_points: int = 0
    shard: qe.EdgeShard | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    closed: bool = False
    unflushed: int = 0
    # While an index build or enable_sparse runs: writes since its snapshot, to replay on the
    # new shard.
    journal: deque[qe.UpdateOperation] | None = None
    builder: threading.Thread | None = None
    proc: subprocess.Popen[bytes] | None = None
    # No new build before the shard holds this many points (stops retrying a useless build).
    next_build_at: int = 0
    # Ingest calls writing to the collection now (IndexBuilder.hold): builds wait for them.
    writers: int = 0
    # While enable_sparse copies the shard: the BM25 config the journal's upserts carry (see
    # edge_upgrade); no index build starts meanwhile, so the two never share the journal.
    upgrading: Bm25Config | None = None
    # Held by enable_sparse for its whole run: one upgrade of a collection at a time.
    upgrade_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def shard_dir(self) -> Path:
        """The live shard's directory."""
        return self.dir / self.shard_name

    def meta(self) -> dict[str, Any]:
        """The collection.json document."""
        return {
            "format": FORMAT,
            "name": self.name,
            "provenance": provenance_to_dict(self.provenance),
            "bm25": bm25_to_dict(self.bm25),
            "created_at": self.created_at,
            "shard": self.shard_name,
            "indexed_points": self.indexed_points,
        }

    def write_meta(self) -> None:
        """Write collection.json durably and atomically (the commit point)."""
        write_json(self.dir / META, self.meta())


def lock_store(path: Path) -> int:
    """An exclusive flock on `path`, held until the fd closes (the kernel drops it on exit)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ServiceUnavailable(
            f"the embedded vector store at {path.parent} is in use by another process"
        ) from None
    return fd


def new_shard_name() -> str:
    """A fresh shard directory name."""
    return f"{SHARD_PREFIX}{uuid.uuid4().hex}"


def fresh_collection_dir(collections: Path, name: str) -> Path:
    """An empty directory for a new collection `name` under `collections`."""
    directory = collections / name
    if directory.exists():  # a create that crashed before writing collection.json
        shutil.rmtree(directory)
    directory.mkdir()
    return directory


def move_to_trash(directory: Path) -> Path:
    """Rename a collection's directory to a trash name beside it; the caller removes it.

    Renaming first makes the name free at once and the deletion all-or-nothing.
    """
    trash = directory.parent / f"{TRASH_PREFIX}{uuid.uuid4().hex}"
    directory.rename(trash)
    return trash


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON durably and atomically: a temp file, fsync, os.replace, fsync the folder."""
    tmp = path.with_name(f"{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def scan(collections: Path) -> dict[str, EdgeCollection]:
    """Load every collection.json under `collections` and delete what a crash left behind."""
    found: dict[str, EdgeCollection] = {}
    for entry in sorted(collections.iterdir()):
        if entry.name.startswith(TRASH_PREFIX):
            shutil.rmtree(entry, ignore_errors=True)
            continue
        try:
            check_collection_name(entry.name)
        except InvalidRequest:
            continue
        if not entry.is_dir():
            continue
        if not (entry / META).exists():
            log.warning("removing %s: its creation did not complete", entry)
            shutil.rmtree(entry, ignore_errors=True)
            continue
        try:
            raw = json.loads((entry / META).read_text("utf-8"))
            c = EdgeCollection(
                name=entry.name,
                dir=entry,
                provenance=provenance_from_dict(raw["provenance"]),
                created_at=str(raw["created_at"]),
                shard_name=str(raw["shard"]),
                bm25=bm25_from_dict(raw.get("bm25")),
                indexed_points=int(raw.get("indexed_points", 0)),
            )
        except (OSError, ValueError, KeyError, TypeError):
            log.exception("skipping collection %s: unreadable %s", entry.name, META)
            continue
        for stale in entry.iterdir():
            if stale.name not in (META, c.shard_name):
                # An interrupted index build or upgrade, or the shard a finished one replaced.
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)
        found[c.name] = c
    return found
