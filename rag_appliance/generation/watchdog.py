"""A watchdog process that ends the generator's processes when the server process dies.

vLLM's engine core does not watch its parent: after a SIGKILL of the server (the OOM killer) it
lives on, holding the model's memory (its worker ends with it, through vLLM's death pipe). The
server starts this module as a script in a small child process (stdlib only, run with `-I -S`,
so it starts fast and imports nothing of this package), which waits for the server to die and
then ends the recorded processes and their descendants: SIGTERM, then SIGKILL after a grace.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence

# How long the engine core gets to shut its worker down after SIGTERM before SIGKILL.
GRACE_S = 5.0
# The parent-death signal wakes the watchdog at once; polling covers a missed one.
POLL_S = 0.5
STOP_TIMEOUT_S = 5.0
_PR_SET_PDEATHSIG = 1


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None  # a zombie holds no memory; only its parent can reap it
    return int(fields[19])


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(name))
    return tree


def descendants(pids: Iterable[int]) -> dict[int, int]:
    """Every live process below `pids` (children, grandchildren, ...) -> its start time."""
    tree = _children()
    found: dict[int, int] = {}
    todo = list(pids)
    while todo:
        for child in tree.get(todo.pop(), []):
            started = start_time(child)
            if started is not None and child not in found:
                found[child] = started
                todo.append(child)
    return found


def _alive(targets: Mapping[int, int]) -> dict[int, int]:
    # A pid whose start time changed was reused by an unrelated process: never signal it.
    return {pid: st for pid, st in targets.items() if start_time(pid) == st}


def _signal(targets: Mapping[int, int], signum: int) -> None:
    for pid in _alive(targets):
        with contextlib.suppress(OSError):  # it ended meanwhile
            os.kill(pid, signum)


def end_processes(targets: Mapping[int, int], grace_s: float = GRACE_S) -> None:
    """SIGTERM the still-same `targets` (pid -> start time) and descendants; SIGKILL after grace."""
    everything = dict(targets)
    # Collected before any signal: a descendant is reparented away once its parent dies.
    everything.update(descendants(_alive(targets)))
    _signal(everything, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _alive(everything) and time.monotonic() < deadline:
        time.sleep(0.1)
    _signal(everything, signal.SIGKILL)


def _watch(server_pid: int, targets: dict[int, int], grace_s: float) -> None:
    # A Ctrl-C reaches the whole process group; the server then stops the generator (and this
    # watchdog) itself, and if it dies instead, this process must still be there to clean up.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    # Without glibc's prctl (not Linux) the poll alone notices the server's death.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGUSR1)
    # The parent-death signal fires when the spawning *thread* ends too: only a changed
    # parent pid (reparented to init or a subreaper) means the server died.
    while os.getppid() == server_pid:
        signal.sigtimedwait({signal.SIGUSR1}, POLL_S)
    print(
        f"rag-appliance watchdog: server pid {server_pid} died; "
        f"ending generator processes {sorted(_alive(targets))}",
        file=sys.stderr,
        flush=True,
    )
    end_processes(targets, grace_s)


class Watchdog:
    """The child process guarding `pids` (and their descendants) against this process's death."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc

    @classmethod
    def start(cls, pids: Sequence[int], *, grace_s: float = GRACE_S) -> Watchdog:
        """Start the watchdog for `pids` (children of this process, so their pids are held)."""
        # Start times are read here: the pids are this process's unreaped children, so they
        # cannot have been reused yet, and the watchdog later spares any pid that was.
        targets = {pid: st for pid in pids if (st := start_time(pid)) is not None}
        args = [f"{pid}:{st}" for pid, st in targets.items()]
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", __file__, str(os.getpid()), str(grace_s), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        return cls(proc)

    @property
    def pid(self) -> int:
        """The watchdog's process id."""
        return self._proc.pid

    def stop(self) -> int | None:
        """End the watchdog, leaving the guarded processes alone; its exit status."""
        if self._proc.poll() is None:
            self._proc.terminate()  # SIGTERM's default action: exit at once, signalling nothing
            try:
                self._proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        return self._proc.returncode


def main(argv: Sequence[str]) -> None:
    """The watchdog process: `SERVER_PID GRACE_S PID:START_TIME...`."""
    server_pid, grace_s = int(argv[0]), float(argv[1])
    targets = {int(p): int(s) for p, s in (a.split(":") for a in argv[2:])}
    _watch(server_pid, targets, grace_s)


if __name__ == "__main__":
    main(sys.argv[1:])
