"""Celery's "result.get() inside a task would deadlock" flag, per thread for embedded workers.

A real worker sets a process-wide flag in ``celery._state`` when its pool starts, so that
``result.get()`` inside a task raises ``RuntimeError`` (and ``allow_join_result()`` lifts it for
chord joins). An embedded worker shares its process with the caller: a process-wide flag would
refuse every ``get()`` of the caller, or none of the tasks'. Once installed, threads marked with
:func:`mark_pool_thread` keep the flag for themselves (set, as in a worker); every other thread
sees Celery's process-wide value, which the embedded worker's pool no longer raises.

Installed only when an embedded worker starts, so a real ``celery worker`` process that imports
this package keeps Celery's behaviour.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable

from celery import _state

__all__ = ["install", "mark_pool_thread", "task_join_will_block"]

_local = threading.local()
_lock = threading.Lock()
_installed = False

#: Modules that import the flag's getter or setter by name (celery._state, where they live, first).
_READERS = ("celery._state", "celery.result", "celery.backends.redis", "celery.backends.rpc")

_global_get: Callable[[], bool] = _state.task_join_will_block  # type: ignore[attr-defined]
_global_set: Callable[[bool], None] = _state._set_task_join_will_block  # type: ignore[attr-defined]


def mark_pool_thread() -> None:
    """Mark the calling thread as a worker pool thread: ``get()`` in it raises, as in a worker."""
    _local.blocks = True


def task_join_will_block() -> bool:
    blocks: bool | None = getattr(_local, "blocks", None)
    return _global_get() if blocks is None else blocks


def _set_task_join_will_block(blocks: bool) -> None:
    if getattr(_local, "blocks", None) is None:
        _global_set(blocks)
    else:
        _local.blocks = blocks


def _ignore_pool_wide_setting(blocks: bool) -> None:
    """Replaces the Pool bootstep's process-wide setting: embedded pools mark their own threads."""


def install() -> None:
    """Make the flag per thread (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        for name in _READERS:
            # celery._state first: a reader imported later takes the per-thread functions from it,
            # so one not imported yet is left so (the Redis backend: ~10 ms of a first start).
            module = sys.modules.get(name)
            if module is None:
                continue
            if hasattr(module, "task_join_will_block"):
                module.task_join_will_block = task_join_will_block  # type: ignore[attr-defined]
            if hasattr(module, "_set_task_join_will_block"):
                module._set_task_join_will_block = _set_task_join_will_block  # type: ignore[attr-defined]
        components = importlib.import_module("celery.worker.components")
        components._set_task_join_will_block = _ignore_pool_wide_setting  # type: ignore[attr-defined]
        _installed = True
