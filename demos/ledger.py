"""A ledger in the result backend: how demo hooks and errbacks that return nothing are observed.

Celery calls an errback taking ``(request, exc, traceback)`` directly inside the worker, and Task
hooks (``on_success``, ``after_return``, ...) return nothing to anyone. To prove they ran, and how
often, they append entries here; the caller reads them back through the same result backend, so
this works whatever the broker and wherever the worker runs. Entries are kept under a custom state
(``LEDGER``), which Celery never treats as a task result.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from celery import Celery
from celery.backends.base import KeyValueStoreBackend

__all__ = ["read", "record"]

STATE = "LEDGER"
_lock = threading.Lock()


def _key(key: str) -> str:
    return f"ledger-{key}"


def _atomic(backend: Any) -> bool:
    """Whether ``backend`` has an atomic counter (Redis, cache, the embedded one; not rpc, database)."""
    incr = getattr(type(backend), "incr", None)
    return incr is not None and incr is not KeyValueStoreBackend.incr


def record(app: Celery, key: str, entry: dict[str, Any]) -> None:
    """Append ``entry`` to the ledger ``key``.

    Backends with an atomic counter (Redis, the embedded one) give each entry its own slot, so
    that pool processes of a prefork worker never overwrite each other's entries; others (rpc,
    database) fall back to read-append-write under a lock, safe within one process.
    """
    backend: Any = app.backend  # a KeyValueStoreBackend here (incr, get_key_for_task)
    if _atomic(backend):
        # The counter's key as the backend names a task's (under the run's key prefix), so that
        # it goes with the run's results.
        slot = int(backend.incr(backend.get_key_for_task(f"{_key(key)}-count"))) - 1
        backend.store_result(f"{_key(key)}-{slot}", entry, STATE)
        return
    with _lock:
        meta = backend.get_task_meta(_key(key))
        entries = list(meta.get("result") or []) if meta.get("status") == STATE else []
        backend.store_result(_key(key), [*entries, entry], STATE)


def read(app: Celery, key: str) -> list[dict[str, Any]]:
    """The entries of ledger ``key`` in the order they were recorded (empty if none)."""
    backend = app.backend
    if not _atomic(backend):
        meta = backend.get_task_meta(_key(key))
        return list(meta.get("result") or []) if meta.get("status") == STATE else []
    entries: list[dict[str, Any]] = []
    for slot in itertools.count():
        meta = backend.get_task_meta(f"{_key(key)}-{slot}", cache=False)
        if meta.get("status") != STATE:
            return entries  # an entry still being written shows on the next read
        entries.append(meta["result"])
    raise AssertionError("unreachable")
