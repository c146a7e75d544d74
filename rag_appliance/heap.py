"""glibc heap settings that keep a long ingestion's RSS near its live data.

By default glibc raises its mmap threshold to the size of each large block freed (up to 32 MiB),
so after the first embedding batches the model's activations (tens of MB each) come from the
heap and arenas, which keep their peak; each thread also gets its own arena. Measured by
bench/upload_memory.py (a 1 MB text upload): 1,024 MB above idle by default, 307 MB with a fixed
1 MiB threshold and two arenas (docs/security.md, "Upload memory").
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

# mallopt's parameter numbers (malloc.h).
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Blocks from this size up are mapped on their own and unmapped when freed.
MMAP_THRESHOLD = 1024 * 1024
ARENA_MAX = 2


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt  # noqa: B018 - glibc only
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return None
    return libc


def tune(mmap_threshold: int = MMAP_THRESHOLD, arena_max: int = ARENA_MAX) -> bool:
    """Fix the mmap threshold and cap the arenas (call once, early); False where not glibc."""
    libc = _libc()
    if libc is None:  # pragma: no cover - not glibc
        return False
    done = bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
    done = bool(libc.mallopt(_M_ARENA_MAX, arena_max)) and done
    if not done:  # pragma: no cover - glibc refuses only out-of-range values
        log.warning("glibc refused the heap settings (mmap threshold, arena max)")
    return done


def trim() -> None:
    """Hand freed heap pages back to the OS (a no-op where not glibc)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def child_env() -> dict[str, str]:
    """The environment form of `tune()`, for a child process that allocates much (glibc reads it
    at start)."""
    return {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_ARENA_MAX": str(ARENA_MAX)}
