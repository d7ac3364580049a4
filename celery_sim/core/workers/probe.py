"""A remote control of its own for polling a worker until it answers.

On Redis, a broadcast whose collect timed out leaves the reply queue's blocking read behind, and
the next broadcast through the same mailbox (the same reply queue) loses its reply: measured, the
first ``inspect`` after a worker was polled ready timed out in full. Polling through a control
of its own keeps the app's ``app.control`` (the one users call) clear of that.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.app.control import Control

__all__ = ["ask", "by_host", "probe_control"]


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
    replies = control.broadcast(
        command, arguments=arguments, destination=destination, reply=True, timeout=timeout, limit=limit
    )
    return by_host(replies)
