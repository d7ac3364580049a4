"""Child processes (worker processes, the fakeredis server) that cannot outlive this process.

On Linux each child asks the kernel for SIGTERM when its parent dies, even by SIGKILL
(``PR_SET_PDEATHSIG``). The kernel's "parent" is the *thread* that forked the child, not the
process: a child started from a scenario's thread would be killed when that thread ends. So
every child is started from one thread that lives as long as this process.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from time import monotonic, sleep
from typing import Any

__all__ = ["die_with_parent", "name_process", "popen", "wait_ready"]

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15

#: One long-lived thread forks every child (see the module's docstring).
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="csim-spawner")


def die_with_parent(signum: int = signal.SIGTERM) -> None:  # pragma: no cover - runs in a child
    """Ask the kernel to send this process ``signum`` when its parent (the thread that forked it) ends (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)


def name_process(name: str) -> None:  # pragma: no cover - runs in a child
    """Name this process's main thread ``name`` (at most 15 bytes; ``ps -o comm``, ``/proc/PID/comm``; Linux):
    a process forked without exec keeps the command line of the one it was forked from."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_NAME, name.encode()[:15])


def popen(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(args, **kwargs)`` in its own session, terminated if this process dies.

    Its own session (process group): Ctrl-C in a terminal reaches this process only, which then
    stops its children in order, and a stop can kill a child's whole group.
    """
    preexec = die_with_parent if sys.platform.startswith("linux") else None

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(args, start_new_session=True, preexec_fn=preexec, **kwargs)

    return _spawner.submit(start).result()


def wait_ready(proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float, poll_s: float = 0.005) -> bool:
    """Whether ``ready()`` became true within ``timeout`` s; False as soon as ``proc`` exits.

    A starting child process has no event to wait on, so ``ready`` is polled (every ``poll_s``
    unless ``ready`` itself waits), bounded by the deadline.
    """
    deadline = monotonic() + timeout
    while monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            return True
        sleep(poll_s)
    return False
