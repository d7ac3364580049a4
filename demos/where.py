"""What a running task can say about where it runs (used by the demos to prove where work happened)."""

from __future__ import annotations

import os
import threading
from typing import Any


def where(task: Any) -> dict[str, Any]:
    """The thread, process, delivery and calling mode of the request ``task`` is running.

    Not ``request.hostname``: on the thread pool Celery fills it with the machine's host name, not
    the worker's node name (prefork sets the node name); the timeline's ``received`` event has it.
    """
    request = task.request
    delivery = request.delivery_info or {}
    return {
        "thread": threading.current_thread().name,
        "pid": os.getpid(),
        "called_directly": bool(request.called_directly),
        "is_eager": bool(request.is_eager),
        "exchange": delivery.get("exchange"),
        "routing_key": delivery.get("routing_key"),
    }
