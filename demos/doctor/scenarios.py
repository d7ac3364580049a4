"""The PENDING doctor: each cause of a task "stuck in PENDING" created on purpose, and named.

The doctor (:mod:`celery_sim.tools.doctor`, ``python -m celery_sim doctor``) reads what any
deployment shows: ``ping``, ``inspect``, queue lengths and the result backend. Here it examines
the run's own broker and workers, so each diagnosis is checked against a cause made on purpose.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from celery import Celery

from celery_sim.scenarios.scenario import Context, scenario
from celery_sim.tools.doctor import Finding, examine
from demos.calling.tasks import add
from demos.config import RPC_NO_STORE
from demos.doctor.checks import NO_REPLY_S, REPLY_TIMEOUT_S, names_cause
from demos.doctor.tasks import hold, quiet, release
from demos.routing.tasks import nightly_export


def _examine(
    ctx: Context, task_id: str | None = None, task_name: str | None = None, app: Celery | None = None
) -> Finding:
    return examine(
        app or ctx.app, task_id, task_name, reply_timeout=REPLY_TIMEOUT_S, workers=len(ctx.harness.hostnames)
    )


@contextmanager
def _client(ctx: Context, **changes: Any) -> Iterator[Celery]:
    """A client app of the run (same broker, queues and control exchange) with ``changes`` to its settings."""
    client = Celery("doctor-client", set_as_current=False)
    client.conf.update({**dict(ctx.app.conf.changes), **changes})
    try:
        yield client
    finally:
        client.close()


def _doctor_worker(ctx: Context) -> str:
    """The worker with one pool slot consuming ``doctor`` (kept for the run); returns its node name."""
    return ctx.lasting_worker(["doctor"], name="doctor", concurrency=1).hostname


@scenario(
    "doctor.unregistered",
    "a task name no worker registers: Celery 5.7 stores FAILURE (NotRegistered); the doctor names it by id and by name",
    skip_on=RPC_NO_STORE,
)
def unregistered(ctx: Context) -> None:
    name = "demos.doctor.no_such_task"
    result = ctx.app.send_task(name, queue=ctx.queue("default"))
    ctx.eventually(lambda: result.state, lambda s: s == "FAILURE", timeout=5.0)
    names_cause(ctx, "by id", _examine(ctx, result.id), "unregistered", name)
    names_cause(ctx, "by name", _examine(ctx, task_name=name), "unregistered", "registered on no live worker")


@scenario(
    "doctor.unconsumed_queue",
    "a task routed to a queue no worker consumes: the doctor names the route, the queue and its length",
    skip_on=RPC_NO_STORE,
)
def unconsumed_queue(ctx: Context) -> None:
    result = nightly_export.delay()  # routed to reports_queue, which no worker of the run consumes
    finding = _examine(ctx, result.id, nightly_export.name)
    queue = ctx.queue("reports_queue")
    names_cause(ctx, "nobody consumes it", finding, "unconsumed-queue", f"queue {queue!r}", "1 message(s) waiting")
    ctx.check("the state the client sees", "PENDING", result.state)


@scenario(
    "doctor.scheduled_revoked",
    "a countdown task held by the worker until its ETA is 'scheduled'; after revoke() it is 'revoked'",
    skip_on=RPC_NO_STORE,
)
def scheduled_revoked(ctx: Context) -> None:
    host = _doctor_worker(ctx)
    with ctx.time_scale(1.0):
        result = hold.apply_async((f"scheduled-{uuid.uuid4().hex}",), countdown=600)
    ctx.eventually(lambda: ctx.ran_on(result.id), lambda h: h is not None, timeout=5.0)
    names_cause(ctx, "countdown=600", _examine(ctx, result.id), "scheduled", "scheduled for later", host, ok=True)
    replies = ctx.app.control.revoke(result.id, reply=True, timeout=2.0, limit=len(ctx.harness.hostnames))
    ctx.check("every worker acknowledged revoke()", len(ctx.harness.hostnames), len(replies or []))
    names_cause(ctx, "after revoke()", _examine(ctx, result.id), "revoked", "revoked", host)


@scenario(
    "doctor.reserved_active",
    "one pool slot busy: the running task is 'active' (fine), the one prefetched behind it 'reserved'",
    skip_on=RPC_NO_STORE,
)
def reserved_active(ctx: Context) -> None:
    host = _doctor_worker(ctx)
    key = f"reserved-{uuid.uuid4().hex}"
    running = hold.delay(key)
    try:
        ctx.eventually(lambda: ctx.timeline.first(running.id, "started"), lambda e: e is not None, timeout=5.0)
        waiting = hold.delay(key)
        ctx.eventually(lambda: ctx.ran_on(waiting.id), lambda h: h is not None, timeout=5.0)
        names_cause(ctx, "the task holding the slot", _examine(ctx, running.id), "active", "is running", host, ok=True)
        names_cause(ctx, "the task behind it", _examine(ctx, waiting.id), "reserved", "reserved behind busy pool slots")
    finally:
        release(ctx.app, key)
    ctx.check("both ran once released", ["released", "released"], [ctx.wait(running), ctx.wait(waiting)])


@scenario(
    "doctor.expired",
    "a task whose expires passed before a worker took it: revoked by the worker unrun; the doctor says 'expired'",
    skip_on=RPC_NO_STORE,
)
def expired(ctx: Context) -> None:
    with ctx.time_scale(1.0):
        result = add.apply_async((1, 2), expires=datetime.now(timezone.utc) - timedelta(seconds=1))
    state, _ = ctx.outcome(result)
    ctx.check("the state the worker stored", "REVOKED", state)
    names_cause(ctx, "expires in the past", _examine(ctx, result.id, add.name), "expired", "expired")


@scenario(
    "doctor.result_settings",
    "the task ran, yet the client sees PENDING: ignore_result, no result backend, another backend or "
    "serializer than the worker's, a result gone",
    skip_on=RPC_NO_STORE,
)
def result_settings(ctx: Context) -> None:
    silent = quiet.delay(7)
    ctx.eventually(lambda: ctx.timeline.first(silent.id, "succeeded"), lambda e: e is not None, timeout=5.0)
    ctx.check("ignore_result=True: the state the client sees after it ran", "PENDING", silent.state)
    names_cause(ctx, "ignore_result=True", _examine(ctx, silent.id, quiet.name), "ignore-result", "ignore_result=True")

    done = add.delay(2, 3)
    ctx.check("a task that ran", 5, ctx.wait(done))
    with _client(ctx, result_backend=None) as client:
        names_cause(ctx, "client without result_backend", _examine(ctx, done.id, add.name, client), "no-result-backend")
    with _client(ctx, result_backend="cache+memory://") as client:
        names_cause(
            ctx, "client reading another backend", _examine(ctx, done.id, add.name, client), "backend-mismatch",
            "cache+memory://",
        )  # fmt: skip
    with _client(ctx, task_serializer="pickle", accept_content=["json", "pickle"]) as client:
        names_cause(
            ctx, "client sending pickle to a JSON-only worker", _examine(ctx, task_name=add.name, app=client),
            "serializer-mismatch", "pickle",
        )  # fmt: skip
    done.forget()  # what result_expires (or a cache's eviction) does to a stored result
    names_cause(
        ctx, "result deleted after it was stored", _examine(ctx, done.id, add.name), "result-missing", "expired"
    )


@scenario(
    "doctor.no_worker",
    "no worker on the broker at all: nobody answers ping, the task waits in its queue, the doctor says so",
    skip_on=RPC_NO_STORE,
)
def no_worker(ctx: Context) -> None:
    side = ctx.side()  # a broker namespace of its own, whose only worker is stopped now
    side.stop_workers([side.main_worker])
    result = side.app.tasks[add.name].delay(1, 2)
    finding = examine(side.app, result.id, add.name, reply_timeout=NO_REPLY_S)
    names_cause(ctx, "no worker", finding, "no-worker", "nobody answered ping")
    ctx.check("the task waits in its queue", 1, side.queue_size("default"))
