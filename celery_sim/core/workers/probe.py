"""A remote control of its own for polling a worker until it answers.

On Redis, a broadcast whose collect timed out leaves the reply queue's blocking read behind, and
the next broadcast through the same mailbox (the same reply queue) loses its reply: measured, the
first ``inspect`` after a worker was polled ready timed out in full. Polling through a control
of its own keeps the app's ``app.control`` (the one users call) clear of that.
"""

from __future__ import annotations

from celery import Celery
from celery.app.control import Control

__all__ = ["probe_control"]


def probe_control(app: Celery) -> Control:
    """A :class:`~celery.app.control.Control` of ``app`` with its own mailbox and reply queue."""
    return Control(app)
