"""The PENDING doctor: why is this task not done, on a real deployment?

Checks, in order, and names the first cause found with its evidence and the fix: no worker at
all; the task's name registered on no live worker; its queue consumed by no worker; the task
revoked, scheduled for later (ETA), reserved but not started, or running; done (and how: an
expiry is a revoke by the worker); no result backend in the client; ``ignore_result``; the
workers storing results in another backend, or with a serializer the client cannot read; and,
when the result backend says PENDING and no worker knows the id, what that leaves (never sent,
or its result expired or was evicted).

It only reads: remote-control ``ping``/``inspect`` (whose replies come to a reply queue of its
own, as for ``celery inspect``), the result backend's state, and queue lengths by a passive
declare. It never consumes, purges or acknowledges a message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from time import time
from typing import Any

from celery import Celery
from celery.app.control import Control
from celery.backends.base import DisabledBackend
from celery.exceptions import NotRegistered, TaskRevokedError
from kombu.utils.url import sanitize_url

from celery_sim.core.admin import message_count
from celery_sim.core.workers.probe import ask, by_host, consumers

__all__ = ["KINDS", "Finding", "examine", "json_control"]

#: How long workers get to answer each broadcast (``celery inspect`` waits 1 s).
REPLY_TIMEOUT_S = 1.0

#: Every cause the doctor names, by kind (``Finding.kind``).
KINDS = (
    "no-worker",
    "unregistered",
    "unconsumed-queue",
    "revoked",
    "scheduled",
    "reserved",
    "active",
    "done",
    "expired",
    "no-result-backend",
    "ignore-result",
    "backend-mismatch",
    "serializer-mismatch",
    "result-missing",
    "fine",
)


@dataclass
class Finding:
    """What the doctor concluded: ``ok`` (the task is fine: done, or running), the ``kind`` of
    cause (one of :data:`KINDS`), the cause in words, the evidence it rests on, and the fix."""

    ok: bool
    kind: str
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


def examine(
    app: Celery,
    task_id: str | None = None,
    task_name: str | None = None,
    *,
    reply_timeout: float = REPLY_TIMEOUT_S,
    workers: int | None = None,
) -> Finding:
    """Examine ``task_id`` (and/or the task named ``task_name``) on ``app``'s broker and backend.

    ``workers``: how many workers are expected to answer ``ping`` (it returns as soon as that
    many did; without it, after ``reply_timeout``). Later broadcasts wait only for the workers
    that answered ``ping``.
    """
    control = json_control(app)
    hosts = sorted(by_host(control.ping(timeout=reply_timeout, limit=workers)))
    if not hosts:
        return Finding(
            False,
            "no-worker",
            "no worker at all: nobody answered ping on this broker",
            "start a worker on this broker: celery -A <your app> worker -l INFO",
            [f"ping: no reply within {reply_timeout:g} s"],
        )
    exam = _Exam(app, _Ask(control, reply_timeout, len(hosts)), task_id, task_name)
    exam.evidence.append(f"workers answering ping: {', '.join(hosts)}")
    for step in (exam.stored, exam.registered, exam.in_worker, exam.results):
        finding = step()
        if finding is not None:
            return finding
    return exam.finding(True, "fine", f"task {task_name!r} is registered and its queue is consumed")


def json_control(app: Celery) -> Control:
    """Remote control for ``app`` that speaks JSON whatever the app's ``task_serializer``.

    Celery's control messages use the client's ``task_serializer``: a client sending pickle cannot
    even ``ping`` workers that accept only JSON (they refuse the message), which would read as
    "no worker at all". The doctor asks in what workers accept by default.
    """
    control = Control(app)
    mailbox: Any = getattr(control, "mailbox")  # noqa: B009  # set in Control.__init__, untyped
    mailbox.serializer = "json"
    mailbox.accept = ["json"]
    return control


class _Ask:
    """``inspect`` commands through the doctor's JSON control, each waiting for ``limit`` replies."""

    def __init__(self, control: Control, timeout: float, limit: int) -> None:
        self.control = control
        self.timeout = timeout
        self.limit = limit

    def __call__(self, command: str, **arguments: Any) -> dict[str, Any]:
        """``{node name: reply}`` of the workers that answered ``command``."""
        return ask(self.control, command, timeout=self.timeout, limit=self.limit, **arguments)


class _Exam:
    """The checks after ``ping``, in order; each returns a finding or None (look further)."""

    def __init__(self, app: Celery, ask: _Ask, task_id: str | None, task_name: str | None) -> None:
        self.app = app
        self.ask = ask
        self.task_id = task_id
        self.task_name = task_name
        self.state: str | None = None
        self.consumers: list[str] = []
        self.evidence: list[str] = []

    def finding(self, ok: bool, kind: str, cause: str, fix: str = "") -> Finding:
        return Finding(ok, kind, cause, fix, self.evidence)

    def stored(self) -> Finding | None:
        """The state in the result backend: done, or revoked/expired by a worker."""
        if self.task_id is None or isinstance(self.app.backend, DisabledBackend):
            return None
        result = self.app.AsyncResult(self.task_id)
        self.state = str(result.state)
        self.evidence.append(f"result backend: state {self.state}")
        self.task_name = self.task_name or getattr(result, "name", None)
        if self.state == "REVOKED":
            reason = result.result
            if isinstance(reason, TaskRevokedError) and "expired" in str(reason):
                return self.finding(
                    False,
                    "expired",
                    f"task {self.task_id} expired: its expires had passed when a worker took it, so the worker "
                    "revoked it without running it",
                    "send it with a later expires (or none), or add workers so that it starts sooner",
                )
            return self.finding(False, "revoked", f"task {self.task_id} was revoked: {reason!r}")
        if self.state == "FAILURE" and isinstance(result.result, NotRegistered):
            return self.finding(
                False,
                "unregistered",
                f"task {result.result} is registered on no worker that received it: the worker discarded it and "
                "stored FAILURE (NotRegistered)",
                "import the task's module in the worker (include= or imports=), or fix the name the client sends",
            )
        if self.state in ("SUCCESS", "FAILURE"):
            return self.finding(self.state == "SUCCESS", "done", f"the task is done: {self.state}")
        return None

    def registered(self) -> Finding | None:
        """The task's name on the live workers, and its queue's consumers."""
        name = self.task_name
        if not name:
            return None
        registered = self.ask("registered") or {}
        knowing = sorted(host for host, names in registered.items() if name in (names or []))
        self.evidence.append(f"workers registering {name!r}: {', '.join(knowing) or 'none'}")
        if not knowing:
            return self.finding(
                False,
                "unregistered",
                f"task {name!r} is registered on no live worker: a worker that receives it discards it "
                '("Received unregistered task") and the client sees PENDING',
                "import the task's module in the worker (include= or imports=), or fix the name the client sends",
            )
        route = self.app.amqp.router.route({}, name, (), {})
        queue = str(getattr(route.get("queue"), "name", route.get("queue")))
        active_queues = self.ask("active_queues") or {}
        self.consumers = consumers(active_queues, queue)
        length = message_count(self.app, queue)
        self.evidence.append(
            f"{name!r} routes to queue {queue!r}: consumed by {', '.join(self.consumers) or 'no worker'}, "
            f"{'no such queue on the broker' if length is None else f'{length} message(s) waiting'}"
        )
        if not self.consumers:
            return self.finding(
                False,
                "unconsumed-queue",
                f"task {name!r} routes to queue {queue!r}, which no worker consumes",
                f"start a worker with -Q {queue} (or add it to one: celery control add_consumer {queue}), "
                "or change the route",
            )
        return None

    def in_worker(self) -> Finding | None:
        """Revoked, scheduled, active or reserved in a live worker."""
        task_id = self.task_id
        if task_id is None:
            return None
        revoked = self.ask("revoked") or {}
        revoking = sorted(host for host, ids in revoked.items() if task_id in (ids or []))
        if revoking:
            self.evidence.append(f"inspect revoked: on {', '.join(revoking)}")
            return self.finding(False, "revoked", f"task {task_id} was revoked ({', '.join(revoking)} discard it)", "")
        steps: tuple[tuple[str, Callable[[], Any], str, str], ...] = (
            ("scheduled", lambda: self.ask("scheduled"), "is scheduled for later (an ETA or countdown)", ""),
            ("active", lambda: self.ask("active"), "is running", ""),
            (
                "reserved",
                lambda: self.ask("reserved"),
                "was received but not started: reserved behind busy pool slots (prefetch)",
                "wait, add pool slots (--concurrency) or workers, or lower worker_prefetch_multiplier",
            ),
        )
        for kind, replies, cause, fix in steps:
            found = _find(replies(), task_id)
            if found is not None:
                host, item = found
                detail = ""
                if kind == "scheduled":
                    detail = f", due {item.get('eta')}"
                elif kind == "active" and item.get("time_start"):
                    detail = f", for {max(0.0, time() - float(item['time_start'])):.1f}s"
                self.evidence.append(f"inspect {kind}: on {host}{detail}")
                return self.finding(kind != "reserved", kind, f"task {task_id} {cause} on {host}{detail}", fix)
        return None

    def results(self) -> Finding | None:
        """Where the result should be: the client's backend, the task's options, the workers' settings."""
        app = self.app
        if isinstance(app.backend, DisabledBackend):
            return self.finding(
                False,
                "no-result-backend",
                "no result backend: the client's app has no result_backend (DisabledBackend), so the state it "
                "reads is always PENDING",
                "configure result_backend in the client's app (the same as the workers')",
            )
        task = app.tasks.get(self.task_name) if self.task_name else None
        if task is not None and task.ignore_result:
            self.evidence.append(f"{self.task_name!r} has ignore_result=True")
            return self.finding(
                False,
                "ignore-result",
                f"task {self.task_name!r} has ignore_result=True: the worker stores no state, so the client "
                "sees PENDING even after it ran",
                "drop ignore_result (or pass ignore_result=False to apply_async) where the caller needs the result",
            )
        mismatch = self._settings_mismatch()
        if mismatch is not None:
            return mismatch
        if self.task_id is None:
            return None
        expires = app.conf.result_expires
        expires_s = expires.total_seconds() if isinstance(expires, timedelta) else expires
        hint = "" if self.task_name else "; give the task's name (--task NAME) to check its route too"
        return self.finding(
            False,
            "result-missing",
            f"no worker knows task {self.task_id} and the result backend says {self.state}: it was never sent to "
            f"this broker, or its result expired (result_expires={expires_s:g} s) or was evicted (a cache backend keeps "
            "the newest 5,000 results), or it ran with ignore_result",
            "look for the id in the worker's log; read results sooner than result_expires, or use a backend that "
            f"keeps them (Redis, a database){hint}",
        )

    def _settings_mismatch(self) -> Finding | None:
        """The result backend and serializers of the workers consuming the task's queue, against the client's."""
        if not self.consumers:
            return None
        confs = self.ask("conf", with_defaults=False) or {}  # as `celery inspect conf`
        mine = sanitize_url(str(self.app.conf.result_backend), mask="********")
        accept = set(self.app.conf.result_accept_content or self.app.conf.accept_content)
        sends = str(self.app.conf.task_serializer)
        for host in self.consumers:
            conf = confs.get(host)
            if not isinstance(conf, dict):
                continue
            theirs = str(conf.get("result_backend") or "not set (DisabledBackend)")
            if theirs.rstrip("/") != mine.rstrip("/"):
                self.evidence.append(f"result_backend: this client {mine}, worker {host} {theirs}")
                return self.finding(
                    False,
                    "backend-mismatch",
                    f"worker {host} stores results in {theirs}, but this client reads {mine}: the client sees PENDING",
                    "give the workers and the clients the same result_backend",
                )
            takes = list(conf.get("accept_content") or ["json"])
            if sends not in takes:
                self.evidence.append(f"task_serializer of this client: {sends}; {host} accepts {takes}")
                return self.finding(
                    False,
                    "serializer-mismatch",
                    f"this client sends tasks as {sends!r}, which worker {host} refuses (it accepts "
                    f"{', '.join(takes)}): it discards the message and the client sees PENDING",
                    "use the same task_serializer and accept_content on both sides",
                )
            serializer = str(conf.get("result_serializer") or "json")
            if serializer not in accept:
                self.evidence.append(f"result_serializer of {host}: {serializer}; client accepts {sorted(accept)}")
                return self.finding(
                    False,
                    "serializer-mismatch",
                    f"worker {host} stores results as {serializer!r}, which this client does not accept "
                    f"({', '.join(sorted(accept))})",
                    "use the same result_serializer and accept_content (result_accept_content) on both sides",
                )
        return None
