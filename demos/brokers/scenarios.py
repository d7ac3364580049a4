"""Broker: what depends on the transport. Each scenario states which brokers do what, and checks it."""

from __future__ import annotations

import os
import signal
import time
import uuid
from time import monotonic
from typing import Any

from celery.result import AsyncResult

from celery_sim.core.harness import Harness
from celery_sim.scenarios.scenario import Context, WaitTimeout, scenario
from demos import ledger
from demos.brokers.private_redis import PrivateRedis, redis_server_path
from demos.brokers.tasks import (
    charge_card,
    charge_card_safely,
    reject_until_redelivered,
    send_notification,
    send_reminder,
)
from demos.config import RPC_NO_STORE
from demos.reported import reported

#: Priorities sent, in this order, to a queue nobody consumes yet.
SENT = [3, 0, 9, 6]
REDIS_PRIORITY = (
    "kombu's Redis transport has no real priorities: one list per step (0, 3, 6, 9) and each fetch "
    "takes the lowest number first, so 0 is the highest priority, the reverse of RabbitMQ"
)
#: broker kind -> (order of execution, how that broker orders).
ORDERS: dict[str, tuple[list[int], str]] = {
    "amqp": ([9, 6, 3, 0], "highest number first (queue declared with x-max-priority)"),
    "redis": ([0, 3, 6, 9], "lowest number first (0 is highest)"),
    "fakeredis": ([0, 3, 6, 9], "lowest number first (0 is highest)"),
    "memory": (SENT, "in the order sent: the memory transport has no priority"),
}


@scenario(
    "broker.priority",
    "a backlog sent with priority= is consumed in priority order: highest number first on RabbitMQ, "
    "lowest first on Redis, no priority on memory://",
    differs_on={
        "redis": REDIS_PRIORITY,
        "fakeredis": REDIS_PRIORITY,
        "memory": "the memory transport ignores priority: first in, first out",
    },
)
def priority(ctx: Context) -> None:
    queue = ctx.queue("priority")  # nobody consumes it until the whole backlog is there
    results = [send_notification.apply_async(args=(p,), queue=queue, priority=p) for p in SENT]
    ctx.start_worker(["priority"], name="prioritised", concurrency=1)
    for result in results:
        ctx.wait(result)
    started = sorted(
        (event.at, p)
        for result, p in zip(results, SENT, strict=True)
        for event in ctx.timeline.events(result.id, ["started"])
    )
    expected, how = ORDERS[ctx.broker]
    ctx.check(f"sent {SENT}; one worker slot ran them {how}", expected, [p for _, p in started])


def _kill_when_running(ctx: Context, result: AsyncResult[Any]) -> int | None:
    """SIGKILL the pool process running ``result`` once the task reports its pid; the pid, or None."""
    running = ctx.timeline.wait_for(
        lambda e: e.task_id == result.id and e.kind == "progress", timeout=min(10.0, ctx.remaining())
    )
    if running is None:
        raise WaitTimeout(f"task {result.id} did not start on the prefork worker")
    pid = int(running.data["meta"]["pid"])
    os.kill(pid, signal.SIGKILL)
    return pid


def _runs(ctx: Context, task_id: str, expected: int) -> list[int]:
    """Process ids of each run of ``task_id``, in order (once ``expected`` runs have reported, or
    after the bounded wait for their events)."""
    return [int(pid) for pid in reported(ctx, task_id, "pid", expected)]


@scenario(
    "broker.acks_late_redelivery",
    "the pool process running a task is killed (SIGKILL): with acks_late and task_reject_on_worker_lost "
    "the task is redelivered and completes; with the default early ack it is lost",
    timeout=30,
    # Its wait on Celery noticing the kills (up to 5 s) beside the others, with a prefork worker of its own.
    lane="broker.acks_late_redelivery",
)
def acks_late_redelivery(ctx: Context) -> None:
    pf, _worker = ctx.prefork()
    tasks = pf.app.tasks
    safe = tasks[charge_card_safely.name].apply_async(args=("order-1",), queue=pf.queue("prefork"))
    lost = tasks[charge_card.name].apply_async(args=("order-2",), queue=pf.queue("prefork"))
    # One in each of the worker's two processes, both killed: Celery notices a dead pool process
    # at once or at its 5 s check (when the exit races its look), so one wait covers both deaths.
    killed = [_kill_when_running(ctx, safe), _kill_when_running(ctx, lost)]
    state, value = ctx.outcome(safe)
    runs = _runs(ctx, safe.id, 2)
    ctx.check(
        "acks_late=True, reject_on_worker_lost=True: redelivered after the kill and completed",
        ("SUCCESS", 2),
        (state, len(runs)),
    )
    ctx.check(
        "... the second run was in another pool process than the killed ones",
        f"not {killed}",
        value.get("pid") if isinstance(value, dict) else value,
        passed=isinstance(value, dict) and value.get("pid") not in (None, *killed),
    )
    state, raised = ctx.outcome(lost)
    ctx.check(
        "default (acknowledged on receipt): the killed task is lost: FAILURE, WorkerLostError, never run again",
        ("FAILURE", "WorkerLostError", 1),
        (state, type(raised).__name__, len(_runs(ctx, lost.id, 1))),
    )


@scenario(
    "broker.reject_requeue",
    "raise Reject(requeue=True) unless request.delivery_info['redelivered']: the message comes back once, "
    "marked redelivered, and the task completes",
    skip_on=RPC_NO_STORE,
)
def reject_requeue(ctx: Context) -> None:
    key = f"reject-{uuid.uuid4().hex[:8]}"
    result = reject_until_redelivered.delay(key)
    # Bounded: where the redelivery is not marked, the task rejects and requeues itself for ever.
    guarded = ctx.guard(result, timeout=3.0)
    ctx.check(
        "the task completes on its redelivery",
        "ran on the redelivery",
        guarded.value if guarded.diagnosis is None else f"not done after 3 s: {guarded.diagnosis}",
    )
    deliveries = [entry["redelivered"] for entry in ledger.read(ctx.app, key)][:4]
    ctx.check(
        "delivered twice: first not redelivered (rejected, requeued), then marked redelivered",
        [False, True],
        deliveries,
    )


#: The visibility timeout of the Redis harness in broker.visibility_timeout, and how often its
#: workers look for messages held longer than that (kombu's defaults: 1 h, every 10 s x 10).
VISIBILITY_S = 1.0
SHORT_VISIBILITY = {"visibility_timeout": VISIBILITY_S, "unacked_restore_interval": 0.2, "unacked_restore_throttle": 1}
ETA_S = 2.5
NO_VISIBILITY = "only kombu's Redis transport redelivers by visibility timeout"


@scenario(
    "broker.visibility_timeout",
    f"Redis: a task with an ETA ({ETA_S:g} s) beyond visibility_timeout ({VISIBILITY_S:g} s) is redelivered "
    "and runs twice; with visibility_timeout above the longest ETA it runs once",
    timeout=20,
    # Its 2.5 s ETA and the redelivery after it, beside the others, on a side harness of its own.
    lane="broker.visibility_timeout",
    skip_on={
        "memory": f"{NO_VISIBILITY}; the memory transport keeps unacked messages with their consumer",
        "amqp": f"{NO_VISIBILITY}; RabbitMQ keeps an unacked message with its consumer (its own trap "
        "is consumer_timeout, 30 min by default, which closes the channel of a worker holding an ETA task)",
    },
)
def visibility_timeout(ctx: Context) -> None:
    # kombu keeps unacked messages under keys shared by every client of the Redis database; a
    # key prefix keeps this short timeout from redelivering anybody else's messages.
    prefix = f"{ctx.harness.ns.prefix}-vt:"
    options = {**SHORT_VISIBILITY, "global_keyprefix": prefix}
    extra = {**ctx.harness.config.extra_conf, "broker_transport_options": options}
    # A real worker process: its event loop sweeps for timed-out messages every 0.2 s here.
    # Measured: the blocking consumer loop of an embedded (thread) worker did not redeliver.
    short: Harness = ctx.side(queues=("eta",), concurrency=2, worker="process", extra_conf=extra)
    try:
        trap = short.app.tasks[send_reminder.name].apply_async(args=("ann",), queue=short.queue("eta"), countdown=ETA_S)
        fixed = send_reminder.apply_async(args=("bob",), countdown=ETA_S)  # this run: kombu's default, 1 h
        ctx.wait(fixed)
        ctx.wait(trap)
        runs = ctx.eventually(lambda: len(ctx.events(trap.id, ["succeeded"])), lambda n: n >= 2, timeout=2.0)
        ctx.check(
            f"visibility_timeout={VISIBILITY_S:g} s < ETA {ETA_S:g} s: redelivered while the worker held it, "
            "and run more than once",
            ">= 2 runs",
            runs,
            passed=runs >= 2 and len(ctx.events(trap.id, ["received"])) >= 2,
        )
        ctx.check(
            "the fix, visibility_timeout above the longest ETA/countdown (default 1 h): it ran once",
            1,
            len(ctx.events(fixed.id, ["started"])),
        )
    finally:
        short.stop()  # (again with the run: stopping is idempotent)
        _delete_keys(ctx, prefix)


def _delete_keys(ctx: Context, prefix: str) -> None:
    """Delete the Redis keys under ``prefix`` that kombu leaves (its binding deadlines)."""
    with ctx.app.connection_for_write() as conn:
        client = conn.default_channel.client  # this run's channel: no key prefix
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)


#: How a caller's publish may retry while the broker is down (Celery's default: 3 retries over ~1 s).
PUBLISH_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


@scenario(
    "broker.connection_loss",
    "the broker (a private redis-server) is killed mid-run and restarted: a publish during the outage "
    "fails fast, the worker reconnects by itself, and the tasks queued before the outage complete after it",
    timeout=20,
    # About half of its ~4 s is kombu's reconnect interval (2 s after the worker's first failed
    # attempt; Celery passes no setting for it) on a private broker: it runs beside the other
    # scenarios; its one timing check is loose (< 2 s).
    lane="broker.connection_loss",
)
def connection_loss(ctx: Context) -> None:
    if redis_server_path() is None:
        ctx.skip("redis-server is not installed; this scenario never stops a shared broker")
    broker, results = PrivateRedis(), PrivateRedis()  # only the broker goes away
    side: Harness | None = None
    try:
        broker.start()
        results.start()
        # The worker does not consume "outage" yet, so that these tasks wait in the broker through
        # the outage. (Not cancel_consumer: measured, a fetch already in flight still takes a message
        # and kombu requeues it, which is lost if the broker is gone by then.)
        side = ctx.side(
            broker=broker.url, result_backend=results.url, queues=("idle",), concurrency=1, worker="process"
        )
        worker = side.main_worker
        before = worker.pid
        queue = side.queue("outage")
        task = side.app.tasks[send_reminder.name]
        queued = [task.apply_async(args=(f"user{n}",), queue=queue) for n in range(3)]
        broker.kill()
        started = monotonic()
        try:
            task.apply_async(args=("late",), queue=queue, retry_policy=PUBLISH_POLICY)
            raised: BaseException | None = None
        except Exception as exc:
            raised = exc
        took = monotonic() - started
        ctx.check(
            "a publish during the outage fails with kombu's OperationalError (retry_policy max_retries=1)",
            "OperationalError",
            type(raised).__name__ if raised else "no error",
        )
        ctx.check("... within 2 s (no hang)", "< 2 s", round(took, 3), passed=took < 2.0)
        time.sleep(0.5)  # the subject of this scenario: the broker stays away a while
        broker.start()
        back_at = ctx.timeline.now()
        failed_calls: list[str] = []

        def resume() -> list[Any]:
            try:
                return side.app.control.add_consumer(queue, destination=[worker.hostname], reply=True, timeout=0.5)
            except Exception as exc:  # the first call may take a pooled connection from before the outage
                failed_calls.append(type(exc).__name__)
                return []

        replies = ctx.eventually(resume, bool, timeout=min(20.0, ctx.remaining()))
        ctx.check(
            "the worker reconnected by itself and answers remote control again (add_consumer outage)",
            "1 reply",
            f"{len(replies or [])} reply, after {len(failed_calls)} call(s) failed on stale pooled connections",
            passed=len(replies or []) == 1,
        )
        values = [ctx.wait(result) for result in queued]
        ctx.check(
            "the 3 tasks queued before the outage completed after it",
            ["reminded user0", "reminded user1", "reminded user2"],
            values,
        )
        starts = [e.at for r in queued for e in ctx.events(r.id, ["started"])]
        ctx.check(
            "... each started after the broker came back",
            "3 starts, all after the restart",
            len(starts),
            passed=len(starts) == 3 and min(starts) > back_at,
        )
        ctx.check(
            "the same worker process throughout (no restart needed)", before, worker.pid if worker.alive else None
        )
    finally:
        if side is not None:
            side.stop()
        broker.close()
        results.close()
