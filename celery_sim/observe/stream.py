"""Celery's own event stream, as Flower and ``celery events`` read it: a receiver on a thread.

:class:`EventStream` binds Celery's :class:`~celery.events.receiver.EventReceiver` to the app's
event exchange and feeds every event (``task-sent``, ``task-received``, ``task-started``, ...,
``worker-online``) to Celery's own :class:`~celery.events.state.State` and to a bounded list.
Start and stop are bounded: it is consuming when :meth:`start` returns, and it leaves its loop
within ``poll_s`` of :meth:`stop`.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from collections.abc import Callable
from time import monotonic
from types import TracebackType
from typing import Any

from celery import Celery
from celery.events.receiver import EventReceiver
from celery.events.state import State

from celery_sim.errors import HarnessError

__all__ = ["EventStream", "ReadyReceiver"]

#: Events kept for :meth:`EventStream.events` (Celery's State keeps its own, also bounded).
MAX_EVENTS = 10_000
#: The type of the event a stream sends itself at start, to know it receives (not kept).
PROBE = "csim-stream-probe"


class ReadyReceiver(EventReceiver):
    """Celery's event receiver, calling ``on_ready`` once it consumes and looking at
    ``should_stop`` every ``poll_s`` seconds (kombu's default: 1 s)."""

    def __init__(self, *args: Any, on_ready: Callable[[], None], poll_s: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_ready = on_ready
        self._poll_s = poll_s

    def on_consume_ready(self, connection: Any, channel: Any, consumers: Any, wakeup: bool = True, **kw: Any) -> None:
        self._on_ready()

    def consume(self, limit: int | None = None, timeout: float | None = None, safety_interval: float = 1, **kw: Any) -> Any:  # fmt: skip
        # Look at should_stop every poll_s instead of every second.
        return super().consume(limit, timeout, self._poll_s, **kw)


class EventStream:
    """Every event the app's workers and clients send, while in the with-block."""

    def __init__(self, app: Celery, *, poll_s: float = 0.05, on_event: Callable[[dict[str, Any]], None] | None = None):
        self.app = app
        self.poll_s = poll_s
        self.on_event = on_event
        self.state: State = app.events.State()
        self._events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self._lock = threading.RLock()
        self._ready = threading.Event()
        self._changed = threading.Condition(self._lock)
        self._receiver: ReadyReceiver | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._probes: set[str] = set()

    def __enter__(self) -> EventStream:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> None:
        """Start the receiver; it has received an event sent after it when this returns."""
        deadline = monotonic() + timeout
        self._thread = threading.Thread(target=self._run, name="csim-event-stream", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None or not self._await_live(deadline):
            self.stop()
            raise HarnessError(f"the event receiver did not start within {timeout:g}s: {self._error!r}")

    def _await_live(self, deadline: float) -> bool:
        """Send a probe event until it arrives. Celery's receiver says it consumes before it has
        subscribed on Redis (kombu subscribes on its first read): events sent in between were lost
        (measured: a task's task-started and task-failed, on real Redis under load)."""
        probe = uuid.uuid4().hex
        with self.app.events.default_dispatcher() as dispatcher:
            while monotonic() < deadline and self._error is None:
                dispatcher.send(PROBE, uuid=probe)
                with self._changed:
                    if self._changed.wait_for(
                        lambda: probe in self._probes, min(0.05, max(0.0, deadline - monotonic()))
                    ):
                        return True
        return False

    def _run(self) -> None:
        try:
            with self.app.connection_for_read() as conn:
                self._receiver = ReadyReceiver(
                    conn, handlers={"*": self._on_event}, app=self.app, on_ready=self._ready.set, poll_s=self.poll_s
                )
                self._receiver.capture(limit=None, timeout=None, wakeup=False)
        except Exception as exc:  # reported by start(), or seen as the end of the stream
            self._error = exc
            self._ready.set()

    def stop(self, timeout: float = 5.0) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == PROBE:
            with self._changed:
                self._probes.add(str(event.get("uuid")))
                self._changed.notify_all()
            return
        with self._changed:
            self.state.event(event)
            self._events.append(event)
            self._changed.notify_all()
        if self.on_event is not None:
            self.on_event(event)

    def events(self, task_id: str | None = None) -> list[dict[str, Any]]:
        """The events received so far (of ``task_id`` only, if given), in arrival order."""
        with self._lock:
            return [e for e in self._events if task_id is None or e.get("uuid") == task_id]

    def wait_for(self, until: Callable[[EventStream], bool], timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until ``until(self)`` holds; re-checked on every event."""
        with self._changed:
            return self._changed.wait_for(lambda: until(self), timeout)
