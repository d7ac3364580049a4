"""Wait until a run has no work left, as Dramatiq's ``StubBroker.join`` does for its queues.

Every task the run published (first calls, retries, ETAs, chain steps, chord callbacks) must have
ended; the run must then stay quiet for a moment, since a task that ends may publish more (its
next step, its callback, its retry) and a worker process's events arrive late. A task that failed
is re-raised in the caller as the exception object the result backend rebuilds, not its name.
"""

from __future__ import annotations

from time import monotonic
from typing import TYPE_CHECKING

from celery.exceptions import NotRegistered
from celery.result import AsyncResult

from celery_sim.errors import CelerySimError
from celery_sim.observe.diagnose import diagnose_pending, diagnose_task

if TYPE_CHECKING:
    from celery_sim.core.harness import Harness

__all__ = ["DrainTimeout", "drain", "raise_failure"]

#: How long the run must stay quiet after its last task ended: in-process signals are recorded in
#: order (a task's next message is published before its end), a worker process's events are not.
QUIET_S = {"thread": 0.005, "process": 0.2, "external": 0.2}


class DrainTimeout(CelerySimError):
    """``drain()`` ran out of time; the message is the diagnosis of every task still pending."""

    def __init__(self, diagnosis: str, pending: list[str]) -> None:
        super().__init__(diagnosis)
        self.diagnosis = diagnosis
        self.pending = pending


def _state(harness: Harness, since: int) -> tuple[list[str], list[str]]:
    """(task ids not ended, task ids whose last attempt failed), from timeline position ``since``."""
    last = harness.timeline.last_kinds(since)
    pending = [task_id for task_id, kind in last.items() if kind == "published"]
    failed = [task_id for task_id, kind in last.items() if kind in ("failed", "unknown")]
    return pending, failed


def raise_failure(harness: Harness, task_id: str, timeout: float) -> None:
    """Raise what ``task_id`` failed with: the exception object itself when the task ran in this
    process, else the one the result backend rebuilds; an unregistered task as ``NotRegistered``."""
    found = harness.failure_of(task_id)
    if found is not None:
        raise found
    unknown = harness.timeline.first(task_id, "unknown")
    if unknown is not None:
        raise NotRegistered(f"{unknown.name!r} (task {task_id}): {diagnose_task(harness, task_id)}")
    AsyncResult(task_id, app=harness.app).get(timeout=max(0.1, timeout), propagate=True)


def drain(harness: Harness, timeout: float = 10.0, *, fail_fast: bool = True, since: int = 0) -> None:
    """Return once every task published since timeline position ``since`` has ended.

    ``fail_fast``: the first task that failed is re-raised as its own exception (``ValueError``,
    ``NotRegistered``, ...), once: a later call goes on past it to the next. Raises :class:`DrainTimeout` after ``timeout`` seconds with the
    diagnosis of what is still pending (an unconsumed queue, a busy pool, an ETA, ...).
    """
    if timeout <= 0:
        raise ValueError(f"timeout={timeout!r}: give a positive number of seconds, e.g. drain(timeout=5)")
    deadline = monotonic() + timeout
    quiet = QUIET_S.get(harness.config.worker, 0.2)
    timeline = harness.timeline
    while True:
        position = timeline.mark()
        pending, failed = _state(harness, since)
        failed = [task_id for task_id in failed if task_id not in harness.raised]
        if fail_fast and failed:
            harness.raised.add(failed[0])  # raised once: a later drain() goes on past it
            raise_failure(harness, failed[0], deadline - monotonic())
        remaining = deadline - monotonic()
        if not pending:
            if timeline.wait_for(lambda e: True, timeout=min(quiet, max(0.0, remaining)), since=position) is None:
                return  # quiet: nothing more was published or ended
            continue
        if remaining <= 0:
            diagnosis = diagnose_pending(harness, since) or "tasks are pending, but none could be diagnosed"
            raise DrainTimeout(f"drain: {len(pending)} task(s) still pending after {timeout:g}s: {diagnosis}", pending)
        timeline.wait_for(lambda e: True, timeout=min(0.05, remaining), since=position)
