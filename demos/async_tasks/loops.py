"""One asyncio event loop per worker thread (or pool process), made once and reused by every task.

``asyncio.run()`` in a task makes and closes a loop per call, and loses what lives on a loop
(connection pools, clients); here each thread keeps its loop open for its life.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run"]

T = TypeVar("T")
_local = threading.local()


class _Held:
    """A thread's loop, closed when the thread ends (its ``threading.local`` values are dropped)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def __del__(self) -> None:
        if not self.loop.is_closed():
            self.loop.close()


def _loop() -> asyncio.AbstractEventLoop:
    held: _Held | None = getattr(_local, "held", None)
    if held is None or held.loop.is_closed():
        held = _local.held = _Held()
    return held.loop


def run(coro: Coroutine[Any, Any, T]) -> tuple[T, int]:
    """Run ``coro`` to its end on this thread's loop; returns its value and the loop's id."""
    loop = _loop()
    return loop.run_until_complete(coro), id(loop)
