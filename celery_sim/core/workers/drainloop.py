"""Celery's blocking consumer loop, looking at a Redis broker every 50 ms instead of every 2 s.

An embedded worker runs Celery's blocking loop (:func:`celery.worker.loops.synloop`), not its
event loop: kombu's event loop is one per process (see :class:`EmbeddedWorker`). A real ``celery
worker`` on Redis runs the event loop. The blocking loop calls ``drain_events(timeout=2.0)``, and
on kombu's Redis transport that wait is not cut short when the worker could take more: once the
worker holds as many unacknowledged messages as its prefetch allows, kombu stops asking Redis
(no ``BRPOP``) and waits out the whole 2 s even after the tasks are acknowledged; work Celery
defers to the loop's next turn (a rate-limited task whose token is due) waits as long. Measured
on real Redis: a 1-slot worker with prefetch 1 ran 20 tasks in 8.3 s (0.74 s on the memory
broker); 4 tasks rate-limited at 20/s started over 2.0 s instead of 0.15 s.

Here the same loop, Celery's own, is given the connection with its wait capped at
:data:`DRAIN_CAP_S`: after each acknowledgement the worker asks Redis again within 50 ms, as the
event loop would on its next tick. Only the wait changes; what the loop does each turn is
Celery's. Other transports are left alone: the memory broker wakes the loop on every put and ack,
and RabbitMQ sends more messages itself as soon as one is acknowledged.
"""

from __future__ import annotations

from typing import Any

from celery.worker import loops

__all__ = ["DRAIN_CAP_S", "capped_synloop", "driver_type"]

#: The longest the blocking loop waits on a Redis broker before it looks again (Celery: 2 s).
#: 20 looks a second cost ~1 ms of CPU a second when idle.
DRAIN_CAP_S = 0.05


class _CappedDrain:
    """The consumer's connection as the loop sees it: ``drain_events`` waits at most ``cap``."""

    def __init__(self, connection: Any, cap: float) -> None:
        self._connection = connection
        self._cap = cap

    def drain_events(self, timeout: float | None = None, **kwargs: Any) -> Any:
        wait = self._cap if timeout is None else min(timeout, self._cap)
        return self._connection.drain_events(timeout=wait, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def capped_synloop(obj: Any, connection: Any, *args: Any, **kwargs: Any) -> Any:
    """:func:`celery.worker.loops.synloop` on ``connection`` with its wait capped at :data:`DRAIN_CAP_S`."""
    return loops.synloop(obj, _CappedDrain(connection, DRAIN_CAP_S), *args, **kwargs)


def driver_type(app: Any) -> str:
    """The kind of ``app``'s broker transport: "redis" (real Redis or fakeredis), "amqp", "memory"..."""
    connection = app.connection_for_read()
    try:
        return str(getattr(connection.transport, "driver_type", ""))
    finally:
        connection.release()
