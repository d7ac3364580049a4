"""How late the machine is waking threads: the slack an upper bound on a wait may honestly add."""

from __future__ import annotations

import threading
import time

__all__ = ["Lateness"]


class Lateness:
    """How late, at worst, a thread woke from 10 ms sleeps while the block ran: how busy the
    machine was meanwhile (other lanes of the run, other processes). A worker's timer, and a
    caller's wait, wake as late; on a quiet machine it is a fraction of a millisecond."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="csim-lateness", daemon=True)

    def _watch(self) -> None:
        while not self._done.is_set():
            before = time.monotonic()
            self._done.wait(0.01)
            self.worst = max(self.worst, time.monotonic() - before - 0.01)

    def __enter__(self) -> Lateness:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(1.0)
