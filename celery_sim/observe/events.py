"""Records Celery's task events (sent by worker processes) in a harness's timeline.

An embedded worker runs in the harness's process, where Celery's signals feed the timeline
directly. A worker in another process (``--worker process`` or ``external``) is observed the way
Celery's own monitors observe it: through task events (``celery worker -E``), plus the custom
``csim-published`` and ``csim-progress`` events sent by :mod:`celery_sim.core.workers.bootstrap`.
"""

from __future__ import annotations

import ast
import logging
import threading
import time
from typing import Any

from celery import Celery

from celery_sim.core.installed import missing_module
from celery_sim.errors import HarnessError
from celery_sim.observe.stream import PROBE, ReadyReceiver
from celery_sim.observe.timeline import EventKind, Timeline

__all__ = ["EventRecorder"]

log = logging.getLogger(__name__)

_KINDS: dict[str, EventKind] = {
    "task-received": "received",
    # Not "task-started": the prefork parent sends it when it hears the child took the job, which
    # can be after the task has finished; worker_app sends csim-started from the task itself.
    "csim-started": "started",
    "task-succeeded": "succeeded",
    "task-failed": "failed",
    "task-retried": "retried",
    "task-revoked": "revoked",
    "task-rejected": "rejected",
    "csim-published": "published",
    "csim-progress": "progress",
}


def _value(text: Any) -> Any:
    """A task's return value from the ``repr`` Celery puts in task-succeeded (the text if not a literal)."""
    try:
        return ast.literal_eval(str(text))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def _exception_name(text: Any) -> str | None:
    """``ValueError`` from an event's exception repr ``ValueError('...')``."""
    return str(text).split("(", 1)[0] or None if text else None


class EventRecorder:
    """A thread consuming the run's event exchange into ``timeline``; bounded start and stop."""

    def __init__(self, app: Celery, timeline: Timeline) -> None:
        self.app = app
        self.timeline = timeline
        self._names: dict[str, str] = {}
        self._retries: dict[str, int] = {}
        self._ready = threading.Event()
        #: Set when the receiver is consuming, or when it gave up before it could.
        self._settled = threading.Event()
        self._stopping = threading.Event()
        self._receiver: ReadyReceiver | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, timeout: float) -> None:
        self._thread = threading.Thread(target=self._run, name="csim-events", daemon=True)
        self._thread.start()
        self._settled.wait(timeout)
        if not self._ready.is_set():
            self.stop(timeout)
            missing = missing_module(self._error, "the event receiver") if self._error else None
            if missing is not None:
                raise missing
            if self._error is not None:
                raise HarnessError(f"the event receiver could not start: {self._error!r}")
            raise HarnessError(f"the event receiver did not start within {timeout:g}s")

    def _consuming(self) -> None:
        self._ready.set()
        self._settled.set()

    def _run(self) -> None:
        """Consume events until stopped; after a lost connection, connect again (every 0.1 s)."""
        while not self._stopping.is_set():
            try:
                with self.app.connection_for_read() as conn:
                    # One attempt: kombu's own retries wait 2 s and more, and events sent before
                    # the receiver is bound again are lost (an event queue is not durable).
                    conn.ensure_connection(max_retries=1, interval_start=0, interval_step=1, interval_max=1)
                    self._receiver = ReadyReceiver(
                        conn, handlers={"*": self._on_event}, app=self.app, on_ready=self._consuming
                    )
                    if self._stopping.is_set():
                        return
                    self._receiver.capture(limit=None, timeout=None, wakeup=False)
                    return  # should_stop was set
            except Exception as exc:  # reported by start() if it never started
                self._error = exc
                log.debug("event receiver lost its connection: %r", exc)
                if not self._ready.is_set():
                    self._settled.set()
                    return
                self._stopping.wait(0.1)

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        if self._receiver is not None:
            self._receiver.should_stop = True
            self._wake()
        if self._thread is not None:
            self._thread.join(timeout)  # the receiver drains in 1 s slices (unless woken)
            self._thread = None

    def _wake(self) -> None:
        """Send the receiver an event of no kind, so that it looks at ``should_stop`` now instead of
        at the end of its 1 s slice (measured: 0.3 s of a process worker's harness stop).

        Sent before the run deletes its event exchange (a send declares it again), over a
        connection of its own: a channel error on RabbitMQ would otherwise close a channel of the
        app's producer pool, and the app's next publish would raise it."""
        try:
            with self.app.connection_for_write() as conn:
                self.app.events.Dispatcher(conn, enabled=True).send(PROBE, uuid="stop")
        except Exception as exc:  # the broker may be gone: the slice ends the wait instead
            log.debug("could not wake the event receiver: %r", exc)

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = _KINDS.get(str(event.get("type")))
        task_id = str(event.get("uuid") or "")
        if kind is None or not task_id:
            return
        if kind == "failed" and str(event.get("exception", "")).startswith("NotRegistered("):
            kind = "unknown"  # what the task_unknown signal says in-process; events have no own type
        name = str(event.get("name") or self._names.get(task_id, "?"))
        self._names.setdefault(task_id, name)
        hostname = event.get("hostname")
        data: dict[str, Any] = {}
        if kind == "published":
            data = {k: v for k, v in event.items() if k not in ("type", "uuid", "name", "hostname", "timestamp")}
            hostname = None
        elif kind == "received":
            self._retries[task_id] = int(event.get("retries") or 0)
            data = {"eta": event.get("eta"), "queue": event.get("routing_key")}
        elif kind == "started":
            # The attempt's own count (0 is one): events of two connections arrive out of order, so
            # the next attempt's task-received (retries=1) can come before this csim-started.
            own = event.get("retries")
            data = {"eager": False, "retries": int(own) if own is not None else self._retries.get(task_id, 0)}
        elif kind == "progress":
            data = {"state": event.get("state"), "meta": event.get("meta")}
        elif kind == "succeeded":
            data = {"result": _value(event.get("result"))}  # Celery sends the result's repr
        elif kind == "failed":
            data = {"exception": _exception_name(event.get("exception")), "message": event.get("exception")}
        elif kind == "retried":
            data = {"reason": event.get("exception")}
        elif kind == "revoked":
            data = {"terminated": event.get("terminated"), "expired": event.get("expired")}
        # When it happened on the worker, not when the event arrived: events from several
        # connections (the worker, its pool processes) arrive out of order. Same clock on one
        # machine; workers on other machines are only as close as their clocks.
        sent = event.get("timestamp")
        ago = max(0.0, time.time() - float(sent)) if isinstance(sent, (int, float)) else 0.0
        if kind == "published":  # dated when Celery created the message (see recorder.published_data)
            ago += float(data.get("sent_after") or 0.0)
        self.timeline.record(kind, task_id, name, hostname, ago=ago, **data)
