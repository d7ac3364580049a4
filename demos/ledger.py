"""A ledger in the result backend: how demo hooks and errbacks that return nothing are observed.

Celery calls an errback taking ``(request, exc, traceback)`` directly inside the worker, and Task
hooks (``on_success``, ``after_return``, ...) return nothing to anyone. To prove they ran, and how
often, they append entries here; the caller reads them back through the same result backend, so
this works whatever the broker and wherever the worker runs. Entries are kept under a custom state
(``LEDGER``), which Celery never treats as a task result.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery

__all__ = ["read", "record"]

STATE = "LEDGER"
_lock = threading.Lock()


def _key(key: str) -> str:
    return f"ledger-{key}"


def record(app: Celery, key: str, entry: dict[str, Any]) -> None:
    """Append ``entry`` to the ledger ``key`` (read-append-write: one writer process at a time)."""
    with _lock:
        entries = read(app, key)
        app.backend.store_result(_key(key), [*entries, entry], STATE)


def read(app: Celery, key: str) -> list[dict[str, Any]]:
    """The entries of ledger ``key`` in the order they were recorded (empty if none)."""
    meta = app.backend.get_task_meta(_key(key))
    if meta.get("status") != STATE:
        return []
    return list(meta.get("result") or [])
