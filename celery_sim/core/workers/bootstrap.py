"""The app of a ``celery worker`` process started by the harness: ``celery -A celery_sim.core.workers.bootstrap worker``.

The harness passes the run's :class:`~celery_sim.core.appfactory.AppSpec` in ``CSIM_APP_SPEC``; this
module builds the same app from it (same tasks, routes, namespaced queues and exchanges). A worker
the user starts for ``--worker external`` gives ``CSIM_BROKER_URL``, ``CSIM_RUN_ID``, the app
(``CSIM_APP=module:attr``, or ``CSIM_CONFIGURE=module:function`` for a fresh one) and optionally
``CSIM_RESULT_BACKEND`` instead (``python -m celery_sim worker-command`` prints the command). The
worker runs with task events on (``-E``), which the harness records in its timeline; what Celery
has no event for (a message published by a task, such as its retry, and ``update_state``) is
sent here as custom events, ``csim-published`` and ``csim-progress``, and so is the moment a task
really starts (``csim-started``, see :func:`_forward_started`).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery import Celery
from celery.signals import task_prerun, worker_shutdown

from celery_sim.core.adopt import Adoption, delete_queues, load_app
from celery_sim.core.appfactory import ENV_SPEC, AppSpec, build_app, load_configure
from celery_sim.core.brokers import UrlBroker
from celery_sim.observe.recorder import published_data, task_published, task_state_updated

__all__ = ["app"]


def _spec_from_env() -> AppSpec:
    text = os.environ.get(ENV_SPEC)
    if text:
        return AppSpec.from_json(text)
    broker, run_id = os.environ.get("CSIM_BROKER_URL"), os.environ.get("CSIM_RUN_ID")
    app_path, configure = os.environ.get("CSIM_APP"), os.environ.get("CSIM_CONFIGURE")
    if not broker or not run_id or not (app_path or configure):
        raise RuntimeError(
            "CSIM_BROKER_URL, CSIM_RUN_ID and CSIM_APP (module:attr of your app) or CSIM_CONFIGURE are not "
            "all set: this module is the app of celery_sim's worker processes. To start a worker for "
            "'complete --worker external', run 'python -m celery_sim worker-command --real-broker URL' "
            "and use the command it prints."
        )
    backend = UrlBroker(broker, os.environ.get("CSIM_RESULT_BACKEND") or None).result_backend
    return AppSpec(broker, backend, run_id, load_configure(configure) if configure else None, app_path=app_path)


def _load() -> tuple[Celery, Adoption]:
    spec = _spec_from_env()
    found = load_app(spec.app_path) if spec.app_path else build_app(spec)
    adoption = Adoption.for_spec(found, spec)
    adoption.apply()  # for the life of this process: never restored
    return found, adoption


app, _adoption = _load()


@worker_shutdown.connect
def _delete_reply_queues(sender: Any = None, **kw: Any) -> None:
    """The rpc:// reply queues this worker's threads made (answering ``revoke`` makes one)."""
    if _adoption.reply_queues:
        try:
            delete_queues(app, _adoption.reply_queues.values())
        except Exception:  # the broker may be gone as the worker stops
            logging.getLogger(__name__).warning("could not delete rpc reply queues", exc_info=True)


_local = threading.local()


def _dispatcher(hostname: str | None = None) -> Any:
    """This process's event dispatcher (pool processes are forked: one each, made on first use)."""
    found = getattr(_local, "dispatcher", None)
    if found is None or getattr(_local, "pid", None) != os.getpid():
        _local.connection = app.connection_for_write()
        found = _local.dispatcher = app.events.Dispatcher(_local.connection, hostname=hostname, enabled=True)
        _local.pid = os.getpid()
    return found


def _forward_started(sender: Any = None, task_id: str = "", task: Any = None, **kw: Any) -> None:
    """When the task really starts: Celery's task-started event comes from the prefork pool's
    parent once it hears the child took the job, which can be after the task has finished."""
    if getattr(task, "app", None) is app:
        request = task.request
        _dispatcher(request.hostname).send(
            "csim-started", uuid=task_id, name=task.name, retries=int(request.retries or 0)
        )


def _forward_published(sender: Any = None, headers: Any = None, warp: Any = None, **kw: Any) -> None:
    if sender is app and headers and warp is not None:
        _dispatcher().send(
            "csim-published",
            uuid=str(headers.get("id")),
            name=str(headers.get("task")),
            by_worker=True,
            **published_data(headers, warp, kw),
        )


def _forward_progress(
    sender: Any = None, task_id: str = "", name: Any = None, state: Any = None, meta: Any = None, **kw: Any
) -> None:
    if sender is app:
        _dispatcher().send("csim-progress", uuid=task_id, name=str(name), state=state, meta=meta)


task_prerun.connect(_forward_started, weak=False)
task_published.connect(_forward_published, weak=False)
task_state_updated.connect(_forward_progress, weak=False)
