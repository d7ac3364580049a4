"""Seeing inside: Celery's own task events, and inspect/control commands observed to take effect.

What Flower and ``celery events`` show comes from task events, sent only by workers started with
``-E`` (or told to by ``enable_events``); what ``celery inspect`` shows comes from remote-control
replies. Both are checked here against what the run's workers really did.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any

from celery.app.control import Control
from celery.result import AsyncResult

from celery_sim.core.workers.probe import by_host, probe_control
from celery_sim.observe.stream import EventStream
from celery_sim.scenarios.scenario import Context, scenario
from demos.calling.tasks import add
from demos.canvas.tasks import fail
from demos.doctor.tasks import hold, release
from demos.monitor.tasks import flaky, limited

#: How long a remote-control command waits for its replies (each returns once every addressee answered).
REPLY_S = 2.0

#: Per task: Celery's event types the worker sends (task-sent, from the client, checked apart),
#: and the state Celery's own State (as Flower keeps it) ends in.
EXPECTED: dict[str, tuple[Counter[str], str]] = {
    "succeeds": (Counter({"task-received": 1, "task-started": 1, "task-succeeded": 1}), "SUCCESS"),
    "fails": (Counter({"task-received": 1, "task-started": 1, "task-failed": 1}), "FAILURE"),
    "retries once": (
        Counter({"task-received": 2, "task-started": 2, "task-retried": 1, "task-succeeded": 1}),
        "SUCCESS",
    ),
    "revoked before it arrived": (Counter({"task-revoked": 1}), "REVOKED"),
}


def _worker_types(stream: EventStream, task_id: str) -> Counter[str]:
    # Celery's own task events only (a run's worker processes add csim-* events of their own).
    return Counter(
        str(e["type"])
        for e in stream.events(task_id)
        if str(e["type"]).startswith("task-") and e["type"] != "task-sent"
    )


def _answers(ctx: Context, control: Control, host: str) -> None:
    """Wait (bounded) until ``host`` answers ``ping`` through ``control``.

    On Redis, the first broadcast to a worker just started, shortly after another broadcast,
    can lose its reply (measured with Celery 5.7 / kombu 5.7: the next one gets it), so the
    commands checked here start once one ping has come back.
    """
    ctx.eventually(lambda: control.ping(destination=[host], timeout=0.25), bool, timeout=5.0)


@scenario(
    "monitor.events",
    "Celery's event receiver (what Flower reads) sees each task's events: sent, received, started, then "
    "succeeded / failed / retried / revoked; disable_events and enable_events switch them",
    timeout=30,  # each wait for events is bounded by 5 s: a missing event fails its check, not the deadline
)
def events(ctx: Context) -> None:
    host = ctx.start_worker(["monitored"], name="monitored", concurrency=2, events="on").hostname
    queue = ctx.queue("monitored")
    conf = ctx.app.conf
    sent_before = conf.task_send_sent_event
    conf.task_send_sent_event = True  # the client's task-sent (`celery worker -E` covers the worker's)
    try:
        with EventStream(ctx.app) as stream:
            _task_events(ctx, stream, queue)
            _switch(ctx, stream, host, queue)
    finally:
        conf.task_send_sent_event = sent_before


def _task_events(ctx: Context, stream: EventStream, queue: str) -> None:
    gone_id = str(uuid.uuid4())
    acks = ctx.app.control.revoke(gone_id, reply=True, timeout=REPLY_S, limit=len(ctx.harness.hostnames))
    ctx.check("revoke() acknowledged by every worker", len(ctx.harness.hostnames), len(acks or []))
    results: Mapping[str, AsyncResult[Any]] = {
        "succeeds": add.apply_async((2, 2), queue=queue),
        "fails": fail.apply_async(("boom",), queue=queue),
        "retries once": flaky.apply_async(queue=queue),
        "revoked before it arrived": add.apply_async((1, 1), queue=queue, task_id=gone_id),
    }
    for result in results.values():
        ctx.outcome(result)
    stream.wait_for(
        lambda s: all(_worker_types(s, r.id) == EXPECTED[label][0] for label, r in results.items()),
        timeout=min(5.0, ctx.remaining()),
    )
    for label, result in results.items():
        types, state = EXPECTED[label]
        seen = stream.events(result.id)
        ctx.check(f"{label}: the worker's events (in any order)", dict(types), dict(_worker_types(stream, result.id)))
        # The client sends task-sent after it published the task, so the worker's task-received
        # can be dated before it; a worker sharing the client's settings sends one per retry too.
        sent = [e for e in seen if e["type"] == "task-sent"]
        ctx.check(f"{label}: task-sent by the client", ">= 1", len(sent), passed=len(sent) >= 1)
        task = stream.state.tasks.get(result.id)
        if label == "retries once":
            # Celery's State orders a task's events by state precedence, except RETRY: a late
            # task-retried (sent after the retry was published, so its new attempt may end first,
            # in another pool slot) overrides SUCCESS. Flower shows that task as RETRY.
            ends = [e["type"] for e in seen if e["type"] in ("task-retried", "task-succeeded")]
            state = "RETRY" if ends and ends[-1] == "task-retried" else "SUCCESS"
            ctx.check(
                f"{label}: Celery's State has the success time, whatever the order",
                True,
                bool(task and task.succeeded),
            )
        ctx.check(f"{label}: the state in Celery's own State (Flower's)", state, task.state if task else None)


def _received(ctx: Context, stream: EventStream, *results: AsyncResult[Any]) -> None:
    """Wait until each result's task-received event has arrived."""
    for result in results:
        stream.wait_for(
            lambda s, r=result: _worker_types(s, r.id)["task-received"] > 0, timeout=min(5.0, ctx.remaining())
        )


def _switch(ctx: Context, stream: EventStream, host: str, queue: str) -> None:
    control = ctx.app.control
    # A worker started with -E sends every group of events: disable_events finds no 'task' group
    # to remove and its events keep coming (Celery 5.7, celery/worker/control.py).
    off = by_host(control.disable_events(destination=[host], reply=True, timeout=REPLY_S))
    ctx.check("-E worker: disable_events replies", {host: {"ok": "task events already disabled"}}, off)
    still = add.apply_async((3, 3), queue=queue)
    ctx.wait(still)
    _received(ctx, stream, still)
    ctx.check(
        "-E worker: task events still sent after disable_events", 1, _worker_types(stream, still.id)["task-received"]
    )
    # A plain `celery worker` (heartbeats, no -E) sends worker events only, until enable_events.
    plain = ctx.start_worker(["plain"], name="plain", kind="thread", events="switchable").hostname
    control = probe_control(ctx.app)  # see inspect_control
    _answers(ctx, control, plain)
    queue = ctx.queue("plain")
    before = add.apply_async((5, 5), queue=queue)
    ctx.wait(before)
    on = by_host(control.enable_events(destination=[plain], reply=True, timeout=REPLY_S))
    ctx.check("plain worker: enable_events replies", {plain: {"ok": "task events enabled"}}, on)
    during = add.apply_async((6, 6), queue=queue)
    ctx.wait(during)
    stream.wait_for(lambda s: _worker_types(s, during.id) == EXPECTED["succeeds"][0], timeout=min(5.0, ctx.remaining()))
    off = by_host(control.disable_events(destination=[plain], reply=True, timeout=REPLY_S))
    ctx.check("plain worker: disable_events replies", {plain: {"ok": "task events disabled"}}, off)
    after = add.apply_async((7, 7), queue=queue)
    ctx.wait(after)
    control.enable_events(destination=[plain], reply=True, timeout=REPLY_S)
    marker = add.apply_async((8, 8), queue=queue)
    ctx.wait(marker)
    # Its task-received events come over the worker's one connection, in order: the marker's
    # arrived, so any of the earlier tasks' would have.
    _received(ctx, stream, marker)
    ctx.check(
        "plain worker: the worker's events of tasks run before enable, after enable, after disable",
        [{}, dict(EXPECTED["succeeds"][0]), {}],
        [dict(_worker_types(stream, r.id)) for r in (before, during, after)],
    )


#: The rate limit set at run time, and how many tasks show it: no more than the 1-slot worker
#: prefetches (4 = Celery's default prefetch multiplier), or the rest wait on the transport.
RATE = 20
LIMITED = 4


@scenario(
    "monitor.inspect_control",
    "ping, inspect (registered, stats, active_queues, active, reserved, scheduled, revoked) and control "
    "(add_consumer, cancel_consumer, rate_limit, revoke, shutdown), each observed to take effect",
    timeout=30,  # its waits are bounded by 5 s each: a command without effect fails its check
)
def inspect_control(ctx: Context) -> None:
    control = ctx.app.control
    hosts = ctx.harness.hostnames
    pongs = by_host(control.ping(timeout=REPLY_S, limit=len(hosts)))
    ctx.check("ping: every worker of the run answers", {h: {"ok": "pong"} for h in hosts}, pongs)
    worker = ctx.start_worker(["control"], name="control", concurrency=1)
    host = worker.hostname
    control = probe_control(ctx.app)
    _answers(ctx, control, host)
    inspect = control.inspect(destination=[host], timeout=REPLY_S)
    ctx.check("registered: the demo task is known", True, add.name in (inspect.registered() or {}).get(host, []))
    # Embedded workers share Celery's module-level worker state (celery.worker.state): their
    # stats count the tasks of every embedded worker in the process; hence a difference.
    before = dict((inspect.stats() or {}).get(host, {}).get("total", {}))
    ctx.wait(add.apply_async((1, 2), queue=ctx.queue("control")))
    stats = (inspect.stats() or {}).get(host, {})
    ctx.check("stats: pool slots", 1, stats.get("pool", {}).get("max-concurrency"))
    total = stats.get("total", {})
    ctx.check("stats: tasks run, one more add", 1, total.get(add.name, 0) - before.get(add.name, 0))
    _queues(ctx, control, host)
    _in_worker(ctx, control, host)
    _rate_limit(ctx, control, host)
    # shutdown: the worker leaves; it no longer answers ping.
    control.shutdown(destination=[host])
    gone = ctx.eventually(lambda: control.ping(destination=[host], timeout=0.2), lambda r: not r, timeout=5.0)
    ctx.check("shutdown: the worker no longer answers ping", [], gone or [])


def _consumed(ctx: Context, control: Control, host: str) -> list[str]:
    queues = (control.inspect(destination=[host], timeout=REPLY_S).active_queues() or {}).get(host, [])
    return sorted(ctx.harness.ns.logical(q["name"]) for q in queues)


def _queues(ctx: Context, control: Control, host: str) -> None:
    ctx.check("active_queues", ["control"], _consumed(ctx, control, host))
    extra = ctx.queue("control_extra")
    added = by_host(control.add_consumer(extra, destination=[host], reply=True, timeout=REPLY_S))
    if not ctx.check("add_consumer: acknowledged", True, "ok" in added.get(host, {})):
        return  # what follows depends on it
    # Celery replies at once and adds the consumer on its loop's next turn (call_soon): wait for it.
    both = ["control", "control_extra"]
    ctx.check(
        "add_consumer: active_queues, soon after",
        both,
        ctx.eventually(lambda: _consumed(ctx, control, host), lambda q: q == both, timeout=5.0),
    )
    taken = add.apply_async((2, 2), queue=extra)
    ctx.wait(taken)
    ctx.check("add_consumer: a task sent to the added queue runs there", host, ctx.ran_on(taken.id))
    cancelled = by_host(control.cancel_consumer(extra, destination=[host], reply=True, timeout=REPLY_S))
    ctx.check("cancel_consumer: acknowledged", True, "ok" in cancelled.get(host, {}))
    ctx.check(
        "cancel_consumer: active_queues, soon after",
        ["control"],
        ctx.eventually(lambda: _consumed(ctx, control, host), lambda q: q == ["control"], timeout=5.0),
    )
    left = add.apply_async((3, 3), queue=extra)
    waiting = ctx.eventually(lambda: ctx.harness.queue_size(extra), lambda n: n == 1, timeout=2.0)
    ctx.check("cancel_consumer: a task sent there waits in the queue, unrun", (1, None), (waiting, ctx.ran_on(left.id)))


def _in_worker(ctx: Context, control: Control, host: str) -> None:
    if ctx.harness.backend_kind == "rpc":
        ctx.skip_check(
            "active, reserved, scheduled, revoked",
            "each task where inspect says",
            "rpc:// stores nothing, and the held tasks are released through the demo's ledger in the result backend",
        )
        return
    inspect = control.inspect(destination=[host], timeout=REPLY_S)
    queue = ctx.queue("control")
    key = f"control-{uuid.uuid4().hex}"
    running = hold.apply_async((key,), queue=queue)
    try:
        ctx.eventually(lambda: ctx.timeline.first(running.id, "started"), lambda e: e is not None, timeout=5.0)
        waiting = hold.apply_async((key,), queue=queue)
        with ctx.time_scale(1.0):
            later = hold.apply_async((key,), queue=queue, countdown=600)
        for task in (waiting, later):
            ctx.eventually(lambda t=task: ctx.ran_on(t.id), lambda h: h is not None, timeout=5.0)

        def ids(replies: dict[str, Any] | None) -> list[str]:
            # Embedded workers share Celery's module-level lists of active and reserved requests,
            # so each answers with the others' too; every request names the worker it came to.
            requests = [item.get("request", item) for item in (replies or {}).get(host, [])]
            return [r.get("id") for r in requests if r.get("hostname") == host]

        ctx.check("active: the task holding the slot", [running.id], ids(inspect.active()))
        ctx.check("reserved: the task prefetched behind it", [waiting.id], ids(inspect.reserved()))
        ctx.check("scheduled: the countdown task", [later.id], ids(inspect.scheduled()))
        control.revoke(later.id, destination=[host], reply=True, timeout=REPLY_S)
        ctx.check("revoke, then revoked", True, later.id in (inspect.revoked() or {}).get(host, []))
    finally:
        release(ctx.app, key)
    ctx.check("the held tasks end once released", ["released", "released"], [ctx.wait(running), ctx.wait(waiting)])


def _rate_limit(ctx: Context, control: Control, host: str) -> None:
    queue = ctx.queue("control")
    changed = by_host(control.rate_limit(limited.name, f"{RATE}/s", destination=[host], reply=True, timeout=REPLY_S))
    try:
        ctx.check("rate_limit: acknowledged", {"ok": "new rate limit set successfully"}, changed.get(host))
        results = [limited.apply_async((n,), queue=queue) for n in range(LIMITED)]
        for result in results:
            ctx.wait(result)
        starts = sorted(e.at for r in results for e in ctx.events(r.id, ["started"]))
        span = starts[-1] - starts[0] if len(starts) == LIMITED else 0.0
        # Celery's token bucket (capacity 1) admits one task every 1/RATE s, so the admissions of
        # LIMITED tasks span (LIMITED - 1)/RATE. A start is seen when the task begins in the pool,
        # a hand-off after its admission that varies with load (12 ms seen on a busy 2-core CI
        # machine); the bound gives the first and last starts one whole interval of it between
        # them. Unlimited, these trivial tasks start within a few ms of each other.
        bound = (LIMITED - 2) / RATE
        ctx.check(
            f"rate_limit {RATE}/s: {LIMITED} starts span at least {bound:.2f} s",
            f">= {bound:.2f} s",
            f"{span:.3f} s",
            passed=span >= bound,
        )
    finally:
        control.rate_limit(limited.name, None, destination=[host], reply=True, timeout=REPLY_S)
