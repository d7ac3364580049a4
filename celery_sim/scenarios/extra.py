"""The catalog's extra harnesses: a prefork worker process, and side harnesses on other brokers.

Scenarios that need what only the prefork pool does, or another broker next to the run's, get
them here; the engine only knows that a harness may have children stopped with it
(:meth:`~celery_sim.core.harness.Harness.attach`).
"""

from __future__ import annotations

import weakref
from dataclasses import replace
from typing import Any

from celery_sim.core.harness import Harness
from celery_sim.core.workers.crew import Worker

__all__ = ["PREFORK_PROCESSES", "prefork", "side"]

#: Pool processes of the run's prefork worker: two, so that a task redelivered after its process
#: was killed need not wait for the replacement (Celery's pool replaces a dead process at once, or
#: up to 5 s later when its exit is missed).
PREFORK_PROCESSES = 2

_PREFORKS: weakref.WeakKeyDictionary[Harness, tuple[Harness, Worker]] = weakref.WeakKeyDictionary()


def prefork(harness: Harness) -> tuple[Harness, Worker]:
    """A harness and its real ``celery worker`` process (prefork pool) consuming ``prefork``.

    What only the prefork pool does (time limits, ``revoke(terminate=True)``) needs it. Started
    on first use, shared by the run's scenarios and stopped (the process reaped) with ``harness``.
    On a broker other processes can reach it is ``harness``, with one more worker; on the memory
    broker, which lives in this process, it is a second harness on the embedded fakeredis broker,
    recording into the same timeline. Send to it through its own app:
    ``pf.app.tasks[name].apply_async(..., queue=pf.queue("prefork"))``.
    """
    found = _PREFORKS.get(harness)
    if found is None or not found[1].running:
        if harness.broker.name != "memory":
            worker = harness.start_worker(["prefork"], name="prefork", concurrency=PREFORK_PROCESSES, kind="process")
            found = (harness, worker)
        else:
            nested = side(
                harness, broker="fakeredis", worker="process", queues=("prefork",), concurrency=PREFORK_PROCESSES
            )
            found = (nested, nested.main_worker)
        _PREFORKS[harness] = found
    return found


def side(harness: Harness, **overrides: Any) -> Harness:
    """Another harness for this run, with ``overrides`` of its configuration (another broker,
    other transport options), started now and stopped with ``harness``.

    It has its own app and namespace but records into the same timeline. Send to it through its
    own app (``side.app.tasks[name]``), not the shared task proxies.
    """
    defaults: dict[str, Any] = {"run_id": None}
    if "broker" in overrides:
        defaults["result_backend"] = None  # the other broker's own default
    if harness.config.worker == "external":
        defaults["worker"] = "thread"  # the user's workers consume this run's namespace only
    child = Harness(replace(harness.config, **{**defaults, **overrides}), timeline=harness.timeline)
    harness.attach(child)
    try:
        child.start()
    finally:
        harness.app.set_current()  # starting made the side harness's app current
    return child
