"""Feeds a :class:`~celery_sim.observe.timeline.Timeline` from one Celery app's publishing and signals.

Celery's signals are process-global; every receiver here keeps only what concerns its own app,
so two harnesses in one process never record each other's tasks.
"""

from __future__ import annotations

import numbers
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from celery import Celery, signals
from celery.utils.dispatch import Signal

from celery_sim.core import timewarp
from celery_sim.core.brokers import backend_kind
from celery_sim.core.namespace import Namespace, NamespacedRouter
from celery_sim.observe.timeline import Timeline

__all__ = ["Recorder", "RecordingAMQPMixin", "published_data", "task_published", "task_state_updated"]

#: Sent by :class:`RecordingAMQPMixin` as a task message is handed to the broker.
task_published = Signal(
    name="csim_task_published", providing_args=["headers", "warp", "queue", "routing_key", "exchange"]
)
#: Sent (by the backends of an instrumented app, see :func:`celery_sim.core.adopt.instrument`) when a
#: task stores a state of its own with ``update_state`` (progress, custom states); sender: the app.
task_state_updated = Signal(name="csim_task_state_updated", providing_args=["task_id", "name", "state", "meta"])


class RecordingAMQPMixin:
    """Mixed into an app's AMQP class: its task sender also reports each message it publishes,
    and its router sends every message to this run's copy of its queue (``csim_ns``).

    It also fixes the moment Celery counts a countdown from (``now``) and keeps it until the
    message is sent, so the timeline knows the exact countdown behind each ETA.
    """

    app: Celery
    csim_ns: Namespace | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._created_at = threading.local()

    def Router(self, queues: Any = None, create_missing: Any = None) -> Any:  # Celery's name
        router: Any = super().Router(queues, create_missing)  # type: ignore[misc]  # Celery's AMQP
        if self.csim_ns is not None:
            router.__class__ = NamespacedRouter
            router.ns = self.csim_ns
        return router

    def as_task_v2(
        self,
        task_id: str,
        name: str,
        args: Any = None,
        kwargs: Any = None,
        countdown: Any = None,
        eta: Any = None,
        group_id: Any = None,
        group_index: Any = None,
        expires: Any = None,
        *rest: Any,
        now: datetime | None = None,
        **options: Any,
    ) -> Any:
        # Celery reads the app's clock only for a countdown or a numeric expiry; it is given the
        # same moment here. Otherwise the creation time is for the timeline alone, and UTC is as good.
        if countdown or isinstance(expires, numbers.Real):
            now = now or self.app.now()
            created = now
        else:
            created = now or datetime.now(timezone.utc)
        self._created_at.value = (task_id, created)
        return super().as_task_v2(  # type: ignore[misc]  # not in the stubs
            task_id, name, args, kwargs, countdown, eta, group_id, group_index, expires, *rest, now=now, **options
        )

    def _creation_time(self, task_id: Any) -> datetime | None:
        created = getattr(self._created_at, "value", None)
        self._created_at.value = None
        return created[1] if created is not None and created[0] == task_id else None

    def _create_task_sender(self) -> Callable[..., Any]:
        send: Callable[..., Any] = super()._create_task_sender()  # type: ignore[misc]  # not in the stubs
        app = self.app

        def send_task_message(producer: Any, name: str, message: Any, *args: Any, **kwargs: Any) -> Any:
            # Delays are compressed first (if a time scale is in force), then the message is
            # reported before sending: a worker may receive it before send() returns.
            custom = kwargs["headers"] = dict(kwargs.get("headers") or {})
            warp = timewarp.apply(
                message.headers,
                custom,
                timewarp.conf_scale(app.conf),
                now=self._creation_time(message.headers.get("id")),
                floor=lambda: timewarp.min_delay(backend_kind(app.conf.result_backend)),
            )
            queue = kwargs.get("queue")
            exchange = kwargs.get("exchange")
            task_published.send(
                sender=app,
                headers=message.headers,
                warp=warp,
                queue=getattr(queue, "name", queue),
                routing_key=kwargs.get("routing_key"),
                exchange=getattr(exchange, "name", exchange),
            )
            return send(producer, name, message, *args, **kwargs)

        return send_task_message


#: The keys of a ``published`` event's data, in the order :func:`published_values` gives them.
PUBLISHED_KEYS = (
    "sent_after",
    "queue",
    "routing_key",
    "exchange",
    "retries",
    "eta",
    "expires",
    "countdown",
    "due_in",
    "time_scale",
    "eta_sent",
    "expires_sent",
)


def published_values(headers: Any, warp: timewarp.Warp, where: dict[str, Any]) -> tuple[Any, ...]:
    """What the timeline keeps of a published message, by :data:`PUBLISHED_KEYS` (JSON-safe).

    ``sent_after`` is how long after Celery created the message (the ``now`` its countdown counts
    from) it was handed to the broker: acquiring a producer connection took ~0.1 s on RabbitMQ.
    The timeline dates the ``published`` event at creation, so a countdown is measured from there.
    ``eta`` and ``expires`` are what Celery computed; ``*_sent`` what the broker got (see timewarp).
    """
    return (
        max(0.0, (datetime.now(timezone.utc) - warp.published_at).total_seconds()),
        where.get("queue"),
        where.get("routing_key"),
        where.get("exchange"),
        headers.get("retries", 0),
        warp.eta.isoformat() if warp.eta else None,
        warp.expires.isoformat() if warp.expires else None,
        warp.countdown,
        warp.due_in,
        warp.scale,
        warp.eta_sent.isoformat() if warp.eta_sent else None,
        warp.expires_sent.isoformat() if warp.expires_sent else None,
    )


def published_data(headers: Any, warp: timewarp.Warp, where: dict[str, Any]) -> dict[str, Any]:
    """:func:`published_values` as a dict (what a worker process sends as an event)."""
    return dict(zip(PUBLISHED_KEYS, published_values(headers, warp, where), strict=True))


#: The keys of each event's data the recorder makes for every task (see ``Timeline.record_values``).
_PUBLISHED_BY = (*PUBLISHED_KEYS, "by_worker")
_RECEIVED_KEYS = ("eta", "queue")
_STARTED_KEYS = ("eager", "retries")
_SUCCEEDED_KEYS = ("result",)


#: Tasks whose receiving node a recorder remembers at most (for the events of their run).
MAX_RECEIVERS = 50_000


class Recorder:
    """Connects one app's signals to one timeline; :meth:`close` disconnects them all."""

    def __init__(self, app: Celery, timeline: Timeline) -> None:
        self.app = app
        self.timeline = timeline
        self._connections: list[tuple[Signal, Callable[..., None]]] = []
        # Node name of the worker that received each task. request.hostname is no substitute: on
        # the thread pool Celery sets it to the machine's host name.
        self._receivers: dict[str, str] = {}
        #: The exception object each task that failed in this process raised (its last attempt).
        self.exceptions: dict[str, BaseException] = {}
        self._connect(task_published, self._on_published)
        self._connect(signals.task_received, self._on_received)
        self._connect(signals.task_prerun, self._on_prerun)
        self._connect(task_state_updated, self._on_state)
        self._connect(signals.task_retry, self._on_retry)
        self._connect(signals.task_success, self._on_success)
        self._connect(signals.task_failure, self._on_failure)
        self._connect(signals.task_revoked, self._on_revoked)
        self._connect(signals.task_unknown, self._on_unknown)
        self._connect(signals.task_rejected, self._on_rejected)

    def _connect(self, signal: Signal, receiver: Callable[..., None]) -> None:
        signal.connect(receiver, weak=False)
        self._connections.append((signal, receiver))

    def close(self) -> None:
        for signal, receiver in self._connections:
            signal.disconnect(receiver)
        self._connections.clear()

    def _hostname(self, task_id: str | None) -> str | None:
        return self._receivers.get(task_id or "")

    def _mine(self, sender: Any) -> bool:
        return sender is self.app or getattr(sender, "app", None) is self.app

    def _on_published(
        self, sender: Any = None, headers: Any = None, warp: timewarp.Warp | None = None, **kw: Any
    ) -> None:
        if sender is not self.app or not headers or warp is None:
            return
        values = published_values(headers, warp, kw)
        self.timeline.record_values(
            "published",
            str(headers.get("id")),
            str(headers.get("task")),
            None,
            _PUBLISHED_BY,
            (*values, threading.current_thread().name.startswith("csim-pool")),
            ago=values[0],
        )

    def _on_received(self, sender: Any = None, request: Any = None, **kw: Any) -> None:
        if not self._mine(sender) or request is None:
            return
        if len(self._receivers) >= MAX_RECEIVERS:  # bounded on a long run: the oldest half goes
            for task_id in list(self._receivers)[: MAX_RECEIVERS // 2]:
                del self._receivers[task_id]
        self._receivers[request.id] = request.hostname
        self.timeline.record_values(
            "received",
            request.id,
            request.name,
            request.hostname,
            _RECEIVED_KEYS,
            (request.eta, request.delivery_info.get("routing_key")),
        )

    def _on_prerun(self, sender: Any = None, task_id: str = "", **kw: Any) -> None:
        if self._mine(sender):
            request = sender.request
            self.timeline.record_values(
                "started",
                task_id,
                sender.name,
                self._hostname(task_id),
                _STARTED_KEYS,
                (bool(request.is_eager), request.retries),
            )

    def _on_state(
        self, sender: Any = None, task_id: str = "", name: Any = None, state: Any = None, meta: Any = None, **kw: Any
    ) -> None:
        if sender is self.app:
            if name is None:  # a request without a task name (an eager call): the name it was published with
                published = self.timeline.first(task_id, "published")
                name = published.name if published is not None else "?"
            self.timeline.record("progress", task_id, str(name), self._hostname(task_id), state=state, meta=meta)

    def _on_retry(self, sender: Any = None, request: Any = None, reason: Any = None, **kw: Any) -> None:
        if self._mine(sender) and request is not None:
            self.timeline.record("retried", request.id, sender.name, self._hostname(request.id), reason=repr(reason))

    def _on_success(self, sender: Any = None, result: Any = None, **kw: Any) -> None:
        if self._mine(sender):
            task_id = sender.request.id
            self.timeline.record_values(
                "succeeded", task_id, sender.name, self._hostname(task_id), _SUCCEEDED_KEYS, (result,)
            )

    def _on_failure(
        self, sender: Any = None, task_id: str = "", exception: BaseException | None = None, **kw: Any
    ) -> None:
        if self._mine(sender):
            if exception is not None:
                self.exceptions[task_id] = exception
            self.timeline.record(
                "failed",
                task_id,
                sender.name,
                self._hostname(task_id),
                exception=type(exception).__name__ if exception else None,
                message=str(exception),
            )

    def _on_revoked(self, sender: Any = None, request: Any = None, **kw: Any) -> None:
        if self._mine(sender) and request is not None:
            self.timeline.record(
                "revoked",
                request.id,
                sender.name,
                self._hostname(request.id),
                terminated=kw.get("terminated"),
                expired=kw.get("expired"),
            )

    def _on_unknown(self, sender: Any = None, name: str = "", id: str = "", **kw: Any) -> None:  # noqa: A002
        if self._mine(sender):
            self.timeline.record("unknown", id, name, getattr(sender, "hostname", None))

    def _on_rejected(self, sender: Any = None, message: Any = None, exc: Any = None, **kw: Any) -> None:
        if self._mine(sender) and message is not None:
            headers = message.headers or {}
            self.timeline.record("rejected", str(headers.get("id")), str(headers.get("task")), reason=repr(exc))
