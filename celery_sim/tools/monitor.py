"""What a live monitor shows: workers, queues and tasks, as one :class:`Snapshot`.

Two sources give the same snapshot:

* :func:`run_snapshot`: a celery_sim run (``complete --monitor``, or ``monitor`` on the embedded
  broker), from what the run observed (its timeline and its workers): no broadcast disturbs
  the scenarios;
* :class:`DeploymentMonitor`: any deployment on a real broker, the way Flower sees it (``ping``
  and ``inspect`` replies, Celery's task events through :class:`~celery_sim.observe.stream.EventStream`),
  plus what Flower cannot show: each unfinished task's progress, read from the result backend
  (``update_state`` meta sends no event).

Rendering is :mod:`celery_sim.reports.monitor_view`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from time import time
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.backends.base import DisabledBackend
from celery.states import READY_STATES

from celery_sim.core.admin import message_count
from celery_sim.core.workers.probe import ask, probe_control

if TYPE_CHECKING:
    from celery_sim.core.harness import Harness
    from celery_sim.observe.stream import EventStream

__all__ = ["DeploymentMonitor", "QueueRow", "Snapshot", "TaskRow", "WorkerRow", "run_snapshot"]

#: Tasks shown: the most recently active first.
MAX_TASKS = 15

#: Timeline kind -> the state a client would read.
_STATE_OF_KIND = {
    "published": "PENDING",
    "received": "RECEIVED",
    "started": "STARTED",
    "retried": "RETRY",
    "succeeded": "SUCCESS",
    "failed": "FAILURE",
    "revoked": "REVOKED",
    "unknown": "FAILURE",
    "rejected": "REJECTED",
}


@dataclass(frozen=True)
class WorkerRow:
    hostname: str
    pool: str
    concurrency: int | None
    active: int
    processed: int


@dataclass(frozen=True)
class QueueRow:
    name: str
    length: int | None  # None: no such queue on the broker
    consumers: tuple[str, ...]


@dataclass(frozen=True)
class TaskRow:
    task_id: str
    name: str
    state: str
    progress: str = ""
    runtime_s: float | None = None
    retries: int = 0
    worker: str = ""


@dataclass(frozen=True)
class Snapshot:
    title: str
    workers: list[WorkerRow] = field(default_factory=list)
    queues: list[QueueRow] = field(default_factory=list)
    tasks: list[TaskRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _progress(meta: Any) -> str:
    """``3/10 (30%)`` for a ``{"current": 3, "total": 10}`` meta, else the meta in short."""
    if isinstance(meta, dict) and isinstance(meta.get("current"), (int, float)) and meta.get("total"):
        current, total = meta["current"], meta["total"]
        return f"{current:g}/{total:g} ({100 * current / total:.0f}%)"
    return "" if meta in (None, {}) else str(meta)[:40]


def run_snapshot(harness: Harness, *, max_tasks: int = MAX_TASKS) -> Snapshot:
    """A snapshot of a celery_sim run, from its timeline and its workers (no broadcast)."""
    timeline = harness.timeline
    logical = harness.ns.logical
    events = timeline.events()
    by_task: dict[str, list[Any]] = {}
    for event in events:
        by_task.setdefault(event.task_id, []).append(event)
    now = timeline.now()
    workers = []
    for worker in harness.workers:
        if not worker.running:
            continue
        ends = [e for e in events if e.hostname == worker.hostname and e.kind in ("succeeded", "failed", "retried")]
        workers.append(
            WorkerRow(
                worker.hostname, worker.kind, worker.concurrency, len(timeline.running_on(worker.hostname)), len(ends)
            )
        )
    queues = []
    published = {str(e.data.get("queue")) for e in events if e.kind == "published"}
    for queue in sorted(harness.known_queues()):
        try:
            length: int | None = harness.queue_size(queue)
        except Exception:  # a queue deleted meanwhile
            length = None
        consumers = tuple(harness.consumers_of(queue))
        if consumers or length or queue in published:  # not those merely declared by the app's settings
            queues.append(QueueRow(logical(queue), length, consumers))
    rows = []
    # Tasks the run sent (not results stored under keys of their own, such as a ledger's).
    sent = {task_id: items for task_id, items in by_task.items() if any(e.kind == "published" for e in items)}
    for task_id, items in sorted(sent.items(), key=lambda kv: kv[1][-1].at, reverse=True)[:max_tasks]:
        last = max(items, key=lambda e: e.at)
        state = _STATE_OF_KIND.get(last.kind, last.kind.upper())
        progress = ""
        if last.kind == "progress":
            state = str(last.data.get("state") or "PROGRESS")
            progress = _progress(last.data.get("meta"))
        starts = [e.at for e in items if e.kind == "started"]
        ended = last.kind in ("succeeded", "failed", "revoked", "unknown", "rejected", "retried")
        runtime = ((last.at if ended else now) - starts[-1]) if starts else None
        received = [e for e in items if e.kind == "received"]
        rows.append(
            TaskRow(
                task_id,
                last.name,
                state,
                progress,
                runtime,
                sum(e.kind == "retried" for e in items),
                received[-1].hostname or "" if received else "",
            )
        )
    return Snapshot(
        f"celery_sim run {harness.ns.run_id} on {harness.broker_label}: {len(sent)} task(s) so far",
        workers,
        queues,
        rows,
    )


class DeploymentMonitor:
    """Snapshots of a deployment on a real broker: workers by ``inspect``, tasks by events and ``inspect``.

    ``stream``: the event stream that collects task events (workers started with ``-E``, or told
    by ``enable_events``); ``queues``: names of queues to show besides those the workers consume.
    """

    def __init__(
        self,
        app: Celery,
        stream: EventStream | None = None,
        *,
        queues: Callable[[], Iterable[str]] | None = None,
        reply_timeout: float = 1.0,
        max_tasks: int = MAX_TASKS,
    ) -> None:
        self.app = app
        self.stream = stream
        self.queues = queues
        self.reply_timeout = reply_timeout
        self.max_tasks = max_tasks
        self.control = probe_control(app)
        with app.connection_for_read() as conn:
            #: On Redis an empty queue does not exist: its length is 0, not "no such queue".
            self._on_redis = conn.transport.driver_type == "redis"

    def _ask(self, command: str, limit: int | None) -> dict[str, Any]:
        return ask(self.control, command, timeout=self.reply_timeout, limit=limit)

    def snapshot(self) -> Snapshot:
        pings = self._ask("ping", None)
        limit = len(pings) or None
        stats = self._ask("stats", limit) if pings else {}
        active = self._ask("active", limit) if pings else {}
        waiting = {
            kind: self._ask(kind, limit) if pings else {} for kind in ("reserved", "scheduled")
        }  # received, not started: behind busy slots, or until their ETA
        consumed = self._ask("active_queues", limit) if pings else {}
        workers = [
            WorkerRow(
                host,
                # "celery.concurrency.prefork:TaskPool" -> "prefork"
                str(stats.get(host, {}).get("pool", {}).get("implementation", "?")).split(":")[0].rsplit(".", 1)[-1],
                stats.get(host, {}).get("pool", {}).get("max-concurrency"),
                len(active.get(host) or []),
                sum((stats.get(host, {}).get("total") or {}).values()),
            )
            for host in sorted(pings)
        ]
        names = {q["name"] for qs in consumed.values() for q in qs or []} | set(self.queues() if self.queues else ())
        queues = [
            QueueRow(
                name,
                message_count(self.app, name) or (0 if self._on_redis else None),
                tuple(sorted(h for h, qs in consumed.items() if any(q["name"] == name for q in qs or []))),
            )
            for name in sorted(names)
        ]
        notes = ["no worker answered ping on this broker"] if not pings else []
        notes.append(
            "tasks: those whose events arrived since the monitor started (workers send them when started with -E, "
            "or after --enable-events), and the running, reserved and scheduled ones from inspect"
        )
        rows = self._tasks(active, waiting)
        return Snapshot(f"{len(workers)} worker(s), {len(queues)} queue(s)", workers, queues, rows, notes)

    def _tasks(self, active: dict[str, Any], waiting: dict[str, dict[str, Any]]) -> list[TaskRow]:
        found: dict[str, TaskRow] = {}
        if self.stream is not None:
            for task_id, task in self.stream.state.tasks_by_time(limit=self.max_tasks):
                started = task.started
                runtime = task.runtime
                if runtime is None and started and task.state not in READY_STATES:
                    runtime = time() - started  # still running
                found[task_id] = TaskRow(
                    task_id,
                    task.name or "?",
                    task.state,
                    "",
                    runtime,
                    task.retries or 0,
                    task.worker.hostname if task.worker is not None else "",
                )
        for host, items in active.items():
            for item in items or []:
                task_id = str(item.get("id"))
                start = item.get("time_start")
                found.setdefault(
                    task_id,
                    TaskRow(
                        task_id, str(item.get("name")), "STARTED", "", time() - float(start) if start else None, 0, host
                    ),
                )
        for kind, replies in waiting.items():
            for host, items in replies.items():
                for item in items or []:
                    request = item.get("request", item)
                    task_id = str(request.get("id"))
                    state = "SCHEDULED" if kind == "scheduled" else "RESERVED"
                    progress = f"due {item.get('eta')}" if kind == "scheduled" else "behind busy slots"
                    found.setdefault(
                        task_id, TaskRow(task_id, str(request.get("name")), state, progress, None, 0, host)
                    )
        rows = list(found.values())[: self.max_tasks]
        if isinstance(self.app.backend, DisabledBackend):
            return rows
        return [self._with_progress(row) for row in rows]

    def _with_progress(self, row: TaskRow) -> TaskRow:
        """The row with the state and meta the task stored with ``update_state`` (no event tells them)."""
        if row.state in READY_STATES:
            return row
        result = self.app.AsyncResult(row.task_id)
        state = str(result.state)
        if state in ("PENDING", row.state):
            return row
        return TaskRow(row.task_id, row.name, state, _progress(result.info), row.runtime_s, row.retries, row.worker)
