"""A remote control of its own for polling a worker until it answers.

On Redis, a broadcast whose collect timed out leaves its blocking read (BRPOP on its reply queue)
pending on the connection, and every broadcast has a reply queue of its own (kombu names it
after the bound mailbox, a new copy per call): the next broadcast on that connection has its
reply read only once the stale read returns. Measured: a worker's second ``ping`` was answered
in 2 ms and its reply read 0.25 s later; the first ``inspect`` after a worker was polled ready
timed out in full. So every question here goes out on a connection of its own, closed after, and
through a control of its own, which keeps the app's ``app.control`` (the one users call) clear.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.app.control import Control

__all__ = ["answers", "ask", "by_host", "consumers", "probe_control"]


def probe_control(app: Celery) -> Control:
    """A :class:`~celery.app.control.Control` of ``app`` with its own mailbox and reply queue."""
    return Control(app)


def by_host(replies: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Celery's broadcast replies (``[{node: reply}, ...]``) as one ``{node: reply}``."""
    return {host: reply for item in replies or [] for host, reply in item.items()}


def ask(
    control: Control,
    command: str,
    *,
    timeout: float,
    limit: int | None,
    destination: list[str] | None = None,
    **arguments: Any,
) -> dict[str, Any]:
    """``{node: reply}`` of the workers (all, or those named in ``destination``) that answered
    ``command`` (an ``inspect`` or ``control`` command), returning once ``limit`` have, or after ``timeout``."""
    with control.app.connection_for_write() as connection:  # its own: see the module's docstring
        replies = control.broadcast(
            command,
            arguments=arguments,
            destination=destination,
            reply=True,
            timeout=timeout,
            limit=limit,
            connection=connection,
        )
    return by_host(replies)


def consumers(active_queues: dict[str, Any], queue: str) -> list[str]:
    """The nodes whose ``active_queues`` answer (``{node: [queue, ...]}``) lists ``queue``, sorted."""
    return sorted(host for host, queues in active_queues.items() if any(q.get("name") == queue for q in queues or []))


def answers(control: Control, hostname: str, timeout: float) -> bool:
    """Whether the worker ``hostname`` answered ``ping`` within ``timeout`` s."""
    return bool(ask(control, "ping", timeout=timeout, limit=1, destination=[hostname]))
