"""The files a folder holds for indexing (supported types only), for the local and remote CLI."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WalkedFile:
    """A file to index and the name it is indexed under."""

    path: Path
    name: str  # the path relative to the folder given (the base name for a file named directly)


def walk(paths: Sequence[str]) -> tuple[list[WalkedFile], list[str]]:
    """Files to index (folders recursively, supported types only) and paths that do not exist."""
    from rag_appliance.ingest.parsers import SUPPORTED_EXTENSIONS

    files: list[WalkedFile] = []
    missing: list[str] = []
    for raw in paths:
        root = Path(raw)
        if root.is_file():
            files.append(WalkedFile(root, root.name))
        elif root.is_dir():
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                if path.suffix.lower() in SUPPORTED_EXTENSIONS:
                    files.append(WalkedFile(path, path.relative_to(root).as_posix()))
        else:
            missing.append(raw)
    return files, missing


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in blocks."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
