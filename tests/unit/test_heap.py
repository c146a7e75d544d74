"""The glibc heap settings: accepted where glibc is, harmless everywhere."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from rag_appliance import heap


def _glibc() -> bool:
    try:
        ctypes.CDLL(None).mallopt  # noqa: B018
    except (OSError, AttributeError):
        return False
    return True


_SCRIPT = """
import resource, sys
from rag_appliance import heap

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()

if sys.argv[1] == "tuned":
    assert heap.tune()
first = bytearray(8 * 1024 * 1024)
del first  # freed: glibc's own threshold rises past the blocks below
blocks, keep = [], []
for _ in range(32):  # 64 MiB in blocks of 2 MiB, each followed by a small live allocation
    block = bytearray(2 * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])
    blocks.append(block)
    keep.append(bytearray(4096))
held = rss()
del blocks, block
print(held - rss())
"""


def _released(mode: str) -> int:
    # In a child: the settings are process-wide and must not leak into the test process.
    run = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return int(run.stdout)


@pytest.mark.skipif(not _glibc(), reason="glibc only")
def test_tuned_freed_blocks_go_back_to_the_os_where_by_default_they_stay() -> None:
    mib = 1024 * 1024
    assert _released("default") < 16 * mib  # the heap keeps them between live allocations
    assert _released("tuned") > 48 * mib  # each was mapped on its own and unmapped when freed


def test_trim_never_raises() -> None:
    heap.trim()
