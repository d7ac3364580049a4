"""The PENDING doctor: why is this task not done, on a real deployment?

Checks, in order, and names the first cause found with its evidence and the fix: no worker at
all; the task's name registered on no live worker; its queue consumed by no worker; the task
scheduled for later (ETA), reserved but not started, or running; revoked; no result backend;
and, when the result backend says PENDING and no worker knows the id, what that leaves.

It only reads: remote-control ``ping``/``inspect`` (whose replies come to a reply queue of its
own, as for ``celery inspect``), the result backend's state, and queue lengths by a passive
declare. It never consumes, purges or acknowledges a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from time import time
from typing import Any

from celery import Celery
from celery.backends.base import DisabledBackend

from celery_sim.core.admin import message_count

__all__ = ["Finding", "examine"]

#: How long workers get to answer each broadcast (``celery inspect`` waits 1 s).
REPLY_TIMEOUT_S = 1.0


@dataclass
class Finding:
    """What the doctor concluded: ``ok`` (the task is fine: done, or running), the cause, the
    evidence it rests on, and the fix."""

    ok: bool
    cause: str
    fix: str = ""
    evidence: list[str] = field(default_factory=list)


def _find(replies: dict[str, Any] | None, task_id: str) -> tuple[str, dict[str, Any]] | None:
    for host, items in (replies or {}).items():
        for item in items or []:
            request = item.get("request", item) if isinstance(item, dict) else {}
            if request.get("id") == task_id:
                return host, item
    return None


def examine(app: Celery, task_id: str | None = None, task_name: str | None = None) -> Finding:
    """Examine ``task_id`` (and/or the task named ``task_name``) on ``app``'s broker and backend."""
    evidence: list[str] = []
    control = app.control
    pings = control.ping(timeout=REPLY_TIMEOUT_S) or []
    hosts = sorted(host for reply in pings for host in reply)
    if not hosts:
        return Finding(
            False,
            "no worker at all: nobody answered ping on this broker",
            "start a worker on this broker: celery -A <your app> worker -l INFO",
            ["ping: no reply within 1 s"],
        )
    evidence.append(f"workers answering ping: {', '.join(hosts)}")
    inspect = control.inspect(timeout=REPLY_TIMEOUT_S)
    state = None
    if task_id is not None and not isinstance(app.backend, DisabledBackend):
        result = app.AsyncResult(task_id)
        state = str(result.state)
        evidence.append(f"result backend: state {state}")
        task_name = task_name or getattr(result, "name", None)
        if state in ("SUCCESS", "FAILURE", "REVOKED"):
            return Finding(state == "SUCCESS", f"the task is done: {state}", "", evidence)
    if task_name:
        registered = inspect.registered() or {}
        knowing = sorted(host for host, names in registered.items() if task_name in (names or []))
        evidence.append(f"workers registering {task_name!r}: {', '.join(knowing) or 'none'}")
        if not knowing:
            return Finding(
                False,
                f"task {task_name!r} is registered on no live worker: a worker that receives it discards it "
                '("Received unregistered task") and the client sees PENDING',
                "import the task's module in the worker (include= or imports=), or fix the name the client sends",
                evidence,
            )
        route = app.amqp.router.route({}, task_name, (), {})
        queue = str(getattr(route.get("queue"), "name", route.get("queue")))
        active_queues = inspect.active_queues() or {}
        consumers = sorted(h for h, qs in active_queues.items() if any(q.get("name") == queue for q in qs or []))
        length = message_count(app, queue)
        evidence.append(
            f"{task_name!r} routes to queue {queue!r}: consumed by {', '.join(consumers) or 'no worker'}, "
            f"{'no such queue on the broker' if length is None else f'{length} message(s) waiting'}"
        )
        if not consumers:
            return Finding(
                False,
                f"task {task_name!r} routes to queue {queue!r}, which no worker consumes",
                f"start a worker with -Q {queue} (or add it to one: celery control add_consumer {queue}), "
                "or change the route",
                evidence,
            )
    if task_id is not None:
        for kind, replies, cause, fix in (
            ("scheduled", lambda: inspect.scheduled(), "is scheduled for later (an ETA or countdown)", ""),
            ("active", lambda: inspect.active(), "is running", ""),
            (
                "reserved",
                lambda: inspect.reserved(),
                "was received but not started: reserved behind busy pool slots (prefetch)",
                "wait, add pool slots (--concurrency) or workers, or lower worker_prefetch_multiplier",
            ),
        ):
            found = _find(replies(), task_id)
            if found is not None:
                host, item = found
                detail = ""
                if kind == "scheduled":
                    detail = f", due {item.get('eta')}"
                elif kind == "active" and item.get("time_start"):
                    detail = f", for {max(0.0, time() - float(item['time_start'])):.1f}s"
                evidence.append(f"inspect {kind}: on {host}{detail}")
                return Finding(kind != "reserved", f"task {task_id} {cause} on {host}{detail}", fix, evidence)
        revoked = inspect.revoked() or {}
        revoking = sorted(host for host, ids in revoked.items() if task_id in (ids or []))
        if revoking:
            evidence.append(f"inspect revoked: on {', '.join(revoking)}")
            return Finding(False, f"task {task_id} was revoked ({', '.join(revoking)} discard it)", "", evidence)
    if isinstance(app.backend, DisabledBackend):
        return Finding(
            False,
            "no result backend: the client's app has no result_backend, so its state is always PENDING",
            "configure result_backend in the client's app (the same as the workers')",
            evidence,
        )
    if task_id is not None:
        return Finding(
            False,
            f"no worker knows task {task_id} and the result backend says {state}: it was never sent to this "
            "broker, or it ran with ignore_result=True, or its result expired or was evicted, or the worker "
            "stores results in another backend than this client reads",
            "compare the worker's and the client's result_backend and task_serializer; look for the id in the "
            "worker's log",
            evidence,
        )
    return Finding(True, f"task {task_name!r} is registered and its queue is consumed", "", evidence)
