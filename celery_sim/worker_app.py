"""The app of a ``celery worker`` process started by the harness: ``celery -A celery_sim.worker_app worker``.

The harness passes the run's :class:`~celery_sim.appfactory.AppSpec` in ``CSIM_APP_SPEC``; this
module builds the same app from it (same tasks, routes, namespaced queues and exchanges). The
worker runs with task events on (``-E``), which the harness records in its timeline; what Celery
has no event for (a message published by a task, such as its retry, and ``update_state``) is
sent here as custom events, ``csim-published`` and ``csim-progress``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from celery import Celery

from .appfactory import ENV_SPEC, AppSpec, build_app
from .recorder import published_data, task_published, task_state_updated

__all__ = ["app"]


def _load() -> Celery:
    text = os.environ.get(ENV_SPEC)
    if not text:
        raise RuntimeError(
            f"{ENV_SPEC} is not set: this module is the app of worker processes started by "
            "celery_sim's harness. To run your own worker for a run, see README ('Worker modes')."
        )
    return build_app(AppSpec.from_json(text))


app = _load()
_local = threading.local()


def _dispatcher() -> Any:
    """This process's event dispatcher (pool processes are forked: one each, made on first use)."""
    found = getattr(_local, "dispatcher", None)
    if found is None or getattr(_local, "pid", None) != os.getpid():
        _local.connection = app.connection_for_write()
        found = _local.dispatcher = app.events.Dispatcher(_local.connection, enabled=True)
        _local.pid = os.getpid()
    return found


def _forward_published(sender: Any = None, headers: Any = None, warp: Any = None, **kw: Any) -> None:
    if sender is app and headers and warp is not None:
        _dispatcher().send(
            "csim-published",
            uuid=str(headers.get("id")),
            name=str(headers.get("task")),
            by_worker=True,
            **published_data(headers, warp, kw),
        )


def _forward_progress(sender: Any = None, task_id: str = "", state: Any = None, meta: Any = None, **kw: Any) -> None:
    if getattr(sender, "app", None) is app:
        _dispatcher().send("csim-progress", uuid=task_id, name=sender.name, state=state, meta=meta)


task_published.connect(_forward_published, weak=False)
task_state_updated.connect(_forward_progress, weak=False)
