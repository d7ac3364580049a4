"""Time: what Celery really does with client timeouts, ETAs, expiry, rate limits and revoke."""

from __future__ import annotations

import itertools
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from celery.exceptions import TaskRevokedError
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult

from celery_sim.core.timewarp import parse_time
from celery_sim.observe.stream import EventStream
from celery_sim.scenarios.scenario import Context, scenario
from demos.lateness import Lateness
from demos.timing.tasks import (
    HARD_LIMIT_S,
    SOFT_LIMIT_S,
    crunch_numbers,
    generate_report,
    resize_images,
    send_email,
    sleep_for,
    stamp,
)

#: The time family runs in two lanes of its own beside the rest of the catalog: what needs the
#: prefork worker process (one, shared by the lane), and the others. In the prefork lane the hard
#: limit comes late: Celery replaces the process it kills at once, or (when the SIGTERM does not end
#: the process within billiard's 0.1 s and its SIGKILL races the pool's look, measured on plain
#: Celery too) at the pool's next 5 s check counted from the worker's start, so the later the kill,
#: the shorter that wait; revoke, which kills a process without waiting for its replacement, comes
#: last. Its checks still hold beside other work: a lower bound (nothing
#: starts before its ETA, the rate limit's spacing) only gets safer under load, and each upper
#: bound keeps the margin it was measured with on a loaded machine, or adds the lateness the
#: machine showed meanwhile (see each check).
LANE, PREFORK_LANE = "time", "time.prefork"

#: How late a delayed task may start after its ETA and still count as on time (the embedded
#: worker's timer fires within a few milliseconds; brokers add their round trip).
ETA_TOLERANCE_S = 0.15


def _redis_results(ctx: Context, app: Any = None) -> bool:
    return type((app or ctx.app).backend).__name__ == "RedisBackend"


def _on_threads(ctx: Context, task: Any, *args: Any) -> AsyncResult[Any]:
    """Send ``task`` to a worker with the threads pool (Celery's embedded, in-process worker)."""
    ctx.start_worker(["threads"], name="threads", kind="thread")
    return task.apply_async(args=args, queue=ctx.queue("threads"))


def _sent_at(ctx: Context, stream: EventStream, task_id: str, kind: str) -> float | None:
    """The timestamp of Celery's own ``kind`` event of ``task_id`` (waiting for it a little)."""

    def sent(s: EventStream) -> list[Any]:
        return [e.get("timestamp") for e in s.events(task_id) if e.get("type") == kind]

    stream.wait_for(lambda s: bool(sent(s)), min(5.0, ctx.remaining()))
    found = sent(stream)
    return float(found[0]) if found and isinstance(found[0], (int, float)) else None


def _armed_at(ctx: Context, stream: EventStream, task_id: str, body_started: Any) -> float | None:
    """When the prefork pool armed ``task_id``'s time limits, at the latest: the earlier of Celery's
    own task-started event and the task body's start (``body_started``, its ``time.time()``).

    The worker's main process sets the limits' timers when the pool process acknowledges the job,
    and then sends task-started, but only after acknowledging the message to the broker (Celery
    5.7's ``Request.on_accepted``): on fakeredis under load that ack put the event 33 ms after
    the timer. The pool process starts the body right after its acknowledgement, so either one
    alone can be late on a loaded machine; both being late is what the checks' margin is for."""
    sent = _sent_at(ctx, stream, task_id, "task-started")
    started = float(body_started) if isinstance(body_started, (int, float)) else None
    found = [t for t in (sent, started) if t is not None]
    return min(found) if found else None


def _at_limit(ctx: Context, what: str, limit: float, slack: float, measured: float | None, *, work_s: float) -> None:
    """Check that ``measured`` (from the pool arming the limit) is within limit-0.01..limit+slack s."""
    ctx.check(
        f"prefork: {what} ({limit:g} s after the pool armed it, of {work_s:g} s of work)",
        f"{limit - 0.01:g}..{limit + slack:g} s",
        None if measured is None else round(measured, 3),
        passed=measured is not None and limit - 0.01 <= measured <= limit + slack,
    )


def _ignored(limit: str, seconds: float, elapsed: float) -> str:
    return (
        f"{limit}={seconds:g} s is ignored by the threads pool (and solo): the same task ran "
        f"{elapsed:.2f} s there, with no error and no log line (Celery 5.7). Limits are enforced "
        "by the prefork pool only: run time-limited tasks on a prefork worker (celery worker -P prefork)."
    )


@scenario(
    "time.soft_limit",
    f"soft_time_limit={SOFT_LIMIT_S:g} s raises SoftTimeLimitExceeded in the task, which cleans up and returns "
    "(prefork worker process); the threads pool ignores the limit",
    timeout=20,
    lane=PREFORK_LANE,
)
def soft_limit(ctx: Context) -> None:
    pf, _worker = ctx.prefork()
    companion = _on_threads(ctx, resize_images, 10)  # runs meanwhile, see below
    with EventStream(pf.app) as stream:
        result = pf.app.tasks[resize_images.name].apply_async(args=(10,), queue=pf.queue("prefork"))
        state, value = ctx.outcome(result)
        armed = _armed_at(ctx, stream, result.id, value.get("started_at") if isinstance(value, dict) else None)
    ctx.check(
        "prefork: the task caught SoftTimeLimitExceeded and returned its clean-up result",
        ("SUCCESS", "cleaned up"),
        (state, value.get("status") if isinstance(value, dict) else value),
    )
    raised = value.get("raised_at") if isinstance(value, dict) else None
    elapsed = raised - armed if isinstance(raised, (int, float)) and armed is not None else None
    # From the limit's timer being set (at the latest: see _armed_at; the body alone was once seen
    # starting 0.1 s after it on a loaded machine) to the exception in the task. The window keeps
    # 0.1 s for a loaded machine and excludes 0.45 s, so a limit set wrong (0.2, 0.45) fails here.
    _at_limit(ctx, "interrupted at the soft limit", SOFT_LIMIT_S, 0.1, elapsed, work_s=0.5)
    ctx.check(
        "the soft_time_limit the task declares is the 0.3 s this scenario teaches",
        0.3,
        pf.app.tasks[resize_images.name].soft_time_limit,
    )
    state, value = ctx.outcome(companion)
    elapsed = value.get("elapsed", 0.0) if isinstance(value, dict) else 0.0
    ctx.check(
        "threads pool: the same task is not interrupted; it finishes all 0.5 s of work",
        ("SUCCESS", "finished", 10),
        (state, value.get("status"), value.get("done")) if isinstance(value, dict) else (state, value, None),
    )
    if isinstance(value, dict) and value.get("status") == "finished":
        ctx.warn(_ignored("soft_time_limit", SOFT_LIMIT_S, elapsed))


@scenario(
    "time.client_timeout",
    "result.get(timeout=0.2) on a longer task raises TimeoutError promptly; the task still finishes on the worker",
    skip_on={
        "rpc": "rpc:// get(timeout=0.2) did not raise: it returned the result 0.6 s later, when it arrived "
        "(Celery checks the timeout between waits on the reply queue, which last up to 1 s)"
    },
    lane=LANE,
)
def client_timeout(ctx: Context) -> None:
    # Longer than the wait, and on the Redis result backend longer than its 1 s wait.
    result = generate_report.delay(1.5 if _redis_results(ctx) else 0.6)
    asked = 0.2
    started = time.monotonic()
    with Lateness() as lateness:
        try:
            result.get(timeout=asked)
            raised: Any = None
        except CeleryTimeoutError as exc:
            raised = exc
    waited = time.monotonic() - started
    gave_up_at = ctx.timeline.now()
    ctx.check(
        "the caller gets celery.exceptions.TimeoutError",
        "celery.exceptions.TimeoutError",
        f"{type(raised).__module__}.{type(raised).__name__}" if raised else "no exception",
    )
    # Measured: Celery's Redis result backend waits in whole seconds (get(timeout=0.3) returns
    # after 1 s, on real Redis too); other backends honour the timeout closely.
    # The bound adds the lateness this machine showed meanwhile (3 ms past 1.25 s seen in CI).
    bound = (1.25 if _redis_results(ctx) else asked + 0.25) + lateness.worst
    ctx.check(
        f"promptly: within {bound:.3f} s (machine lateness {lateness.worst:.3f} s)"
        + (" (Redis result backend: whole seconds)" if bound > 1 else ""),
        f"<= {bound:.3f} s",
        round(waited, 3),
        passed=asked <= waited <= bound,
    )
    ctx.check("the task was not cancelled: it keeps running and finishes", "report ready", ctx.wait(result))
    finished = ctx.timeline.first(result.id, "succeeded")
    ctx.check(
        "it finished after the caller gave up",
        "after",
        "after" if finished and finished.at > gave_up_at else "before",
    )


@scenario(
    "time.countdown_eta",
    "countdown= and eta= delay execution by the asked amount; request.eta is what was asked",
    lane=LANE,
)
def countdown_eta(ctx: Context) -> None:
    delayed_called = ctx.timeline.now()
    delayed = stamp.apply_async(countdown=0.3)
    scheduled_called = ctx.timeline.now()
    asked_eta = datetime.now(timezone.utc) + timedelta(seconds=0.2)
    scheduled = stamp.apply_async(eta=asked_eta)
    with Lateness() as lateness:
        delayed_value, scheduled_value = ctx.wait(delayed), ctx.wait(scheduled)
    late = lateness.worst
    # The ETA is set before the message is handed to the broker (the "published" moment: on
    # RabbitMQ that came 7 ms after the asked ETA was computed, and the start 0.193 s after it).
    # So the lower bound is exact from the call, and the upper bound is the tolerance plus the
    # lateness this machine showed meanwhile (measured under a loaded CI run with lanes:
    # 0.006-0.02 s beyond 0.15 s) from the publish.
    tolerance = ETA_TOLERANCE_S + late
    for result, called, asked, label in (
        (delayed, delayed_called, 0.3, "countdown=0.3"),
        (scheduled, scheduled_called, 0.2, "eta=now+0.2 s"),
    ):
        sent, started = ctx.timeline.first(result.id, "published"), ctx.timeline.first(result.id, "started")
        after_call = started.at - called if started else None
        after_sending = started.at - sent.at if sent and started else None
        ctx.check(
            f"{label}: started {asked:g} s after sending (not sooner from the call; tolerance "
            f"{ETA_TOLERANCE_S:g} s + machine lateness {late:.3f} s)",
            f"from the call >= {asked:g} s, from sending <= {asked + tolerance:.3f} s",
            None
            if after_call is None or after_sending is None
            else {"from the call": round(after_call, 3), "from sending": round(after_sending, 3)},
            passed=after_call is not None
            and after_sending is not None
            and asked - 0.005 <= after_call
            and after_sending <= asked + tolerance,
        )
    published = ctx.timeline.first(delayed.id, "published")
    ctx.check(
        "countdown=0.3: request.eta is the ETA Celery computed (send time + 0.3 s)",
        published.data.get("eta") if published else None,
        delayed_value["eta"],
        passed=published is not None and parse_time(delayed_value["eta"]) == parse_time(published.data.get("eta")),
    )
    ctx.check(
        "eta=...: request.eta is the asked datetime",
        asked_eta.isoformat(),
        scheduled_value["eta"],
        passed=parse_time(scheduled_value["eta"]) == asked_eta,
    )


#: What RabbitMQ does with an expired task, unlike the other brokers.
AMQP_EXPIRES = (
    "Celery also sends expires as the AMQP per-message TTL (expiration); RabbitMQ drops the expired "
    "message itself, so no worker sees it: the task is never run, but never marked REVOKED either, "
    "and a caller waiting without a timeout waits forever"
)


@scenario(
    "time.expires",
    "a task whose expires passes before a worker takes it never runs (REVOKED, TaskRevokedError; "
    "on RabbitMQ dropped, PENDING); an unexpired one runs",
    differs_on={"amqp": AMQP_EXPIRES},
    lane=LANE,
)
def expires(ctx: Context) -> None:
    queue = ctx.queue("expiring")  # consumed by nobody until the first task has expired
    stale = sleep_for.apply_async(args=(0,), queue=queue, expires=0.2)
    fresh = sleep_for.apply_async(args=(0,), queue=queue, expires=60)
    time.sleep(0.3)  # the subject of this scenario is time passing with nobody consuming
    ctx.start_worker(["expiring"], name="late")
    ctx.check("unexpired task runs", 0, ctx.wait(fresh))
    if ctx.broker == "amqp":
        # The fresh task was behind the stale one in the queue: once it has run, the stale
        # message was either delivered (and would be marked) or dropped by RabbitMQ.
        ctx.check("RabbitMQ: no worker ever received the expired task", None, ctx.ran_on(stale.id))
        ctx.check("RabbitMQ: its state stays PENDING (nobody marks it)", "PENDING", stale.state)
        guarded = ctx.guard(stale, timeout=0.3)
        ctx.check(
            "RabbitMQ: get(timeout=0.3) times out instead of raising TaskRevokedError",
            "timed out",
            "timed out" if guarded.timed_out else "returned",
        )
        return
    state, raised = ctx.outcome(stale)
    ctx.check(
        "expired task: the caller gets TaskRevokedError",
        "TaskRevokedError",
        type(raised).__name__,
        passed=isinstance(raised, TaskRevokedError),
    )
    ctx.check("expired task: state", "REVOKED", state)
    revoked = ctx.timeline.first(stale.id, "revoked")
    ctx.check(
        "expired task: the worker discarded it as expired, without running it",
        {"expired": True, "started": False},
        {
            "expired": bool(revoked and revoked.data.get("expired")),
            "started": bool(ctx.timeline.first(stale.id, "started")),
        },
    )


#: How long the tasks holding every pool slot work, and the expiry of the task prefetched behind them.
HOLD_S, PREFETCHED_EXPIRES_S = 0.6, 0.2


def _expire_behind(ctx: Context, app: Any, queue: str, slots: int) -> AsyncResult[Any]:
    """Hold every pool slot of the worker on ``queue``, then send a task that expires while it
    waits there, prefetched (received by the worker, not started)."""
    holders = [app.tasks[sleep_for.name].apply_async(args=(HOLD_S,), queue=queue) for _ in range(slots)]
    for holder in holders:
        ctx.eventually(lambda h=holder: ctx.timeline.first(h.id, "started"), lambda e: e is not None)
    late = app.tasks[sleep_for.name].apply_async(args=(0,), queue=queue, expires=PREFETCHED_EXPIRES_S)
    ctx.eventually(lambda: ctx.timeline.first(late.id, "received"), lambda e: e is not None)
    return late


@scenario(
    "time.expires_prefetched",
    f"a task prefetched behind busy slots expires ({PREFETCHED_EXPIRES_S:g} s) before a slot frees: prefork "
    "discards it (REVOKED); the threads pool runs it anyway",
    timeout=20,
    lane=PREFORK_LANE,
)
def expires_prefetched(ctx: Context) -> None:
    pf, worker = ctx.prefork()
    late = _expire_behind(ctx, pf.app, pf.queue("prefork"), worker.concurrency)
    state, raised = ctx.outcome(late)
    ctx.check(
        "prefork: the expired task is discarded when a slot frees: REVOKED, TaskRevokedError, never started",
        ("REVOKED", "TaskRevokedError", False),
        (state, type(raised).__name__, ctx.timeline.first(late.id, "started") is not None),
    )
    ctx.start_worker(["threads"], name="threads", kind="thread")  # one slot
    late = _expire_behind(ctx, ctx.app, ctx.queue("threads"), 1)
    state, _value = ctx.outcome(late)
    ran = ctx.timeline.first(late.id, "started") is not None
    ctx.check(
        "threads pool: the same expired task runs anyway once the slot frees (Celery 5.7)",
        ("SUCCESS", True),
        (state, ran),
    )
    if ran:
        ctx.warn(
            f"expires={PREFETCHED_EXPIRES_S:g} s is not enforced by the threads pool on a task it has already "
            f"prefetched: the task waited {HOLD_S:g} s for a busy slot and then ran (Celery 5.7 hands each "
            "prefetched task to the threads pool's own queue at once and checks the expiry only then). The prefork "
            "pool discards it (measured): run tasks whose expiry matters on a prefork worker."
        )


@scenario(
    "time.hard_limit",
    f"time_limit={HARD_LIMIT_S:g} s kills the task (TimeLimitExceeded) and the worker replaces the pool process "
    "(prefork worker process); the threads pool ignores the limit",
    timeout=20,
    lane=PREFORK_LANE,
)
def hard_limit(ctx: Context) -> None:
    pf, worker = ctx.prefork()
    before = worker.pool_pids()
    companion = _on_threads(ctx, crunch_numbers, 0.8)  # runs meanwhile, see below
    with EventStream(pf.app) as stream:
        result = pf.app.tasks[crunch_numbers.name].apply_async(args=(2.0,), queue=pf.queue("prefork"))
        state, raised = ctx.outcome(result)
        progress = ctx.timeline.first(result.id, "progress")
        meta = progress.data["meta"] if progress else {}
        armed = _armed_at(ctx, stream, result.id, meta.get("started_at"))
        failed = _sent_at(ctx, stream, result.id, "task-failed")  # by the main process
    ctx.check(
        "prefork: the caller gets TimeLimitExceeded and the task ends FAILURE",
        ("FAILURE", "TimeLimitExceeded"),
        (state, type(raised).__name__),
    )
    ran = failed - armed if failed is not None and armed is not None else None
    # From the limit's timer being set to the worker reporting the kill. Measured 0.403-0.411 s
    # for a 0.4 s limit: the window keeps 0.15 s for a loaded machine and excludes 0.6 s, so a
    # limit set wrong (0.3, 0.6, 0.8) fails here.
    _at_limit(ctx, "killed at the hard limit", HARD_LIMIT_S, 0.15, ran, work_s=2.0)
    ctx.check(
        "the time_limit the task declares is the 0.4 s this scenario teaches",
        0.4,
        pf.app.tasks[crunch_numbers.name].time_limit,
    )
    killed = int(meta["pid"]) if "pid" in meta else None
    # Celery replaces a dead pool process when it notices the exit: at once, or at its 5 s check.
    after = ctx.eventually(worker.pool_pids, lambda pids: len(pids) == len(before) and killed not in pids, timeout=6.0)
    ctx.check(
        "prefork: the killed pool process was replaced by a new one",
        f"{len(before)} processes, without {killed}, one new",
        after,
        passed=killed in before and len(after) == len(before) and len(set(after) - set(before)) == 1,
    )
    state, value = ctx.outcome(companion)
    ctx.check(
        "threads pool: the same task is not killed; it runs 0.8 s past the 0.4 s limit and succeeds",
        ("SUCCESS", "finished"),
        (state, value.get("status") if isinstance(value, dict) else value),
    )
    if isinstance(value, dict) and value.get("status") == "finished":
        ctx.warn(_ignored("time_limit", HARD_LIMIT_S, float(value["elapsed"])))


@scenario(
    "time.rate_limit",
    "rate_limit='10/s' spaces executions 0.1 s apart on one worker; the limit is per worker, not global",
    timeout=20,
    lane=LANE,
)
def rate_limit(ctx: Context) -> None:
    ctx.start_worker(["rated"], name="rated", concurrency=4)
    with Lateness() as lateness:
        results = [send_email.apply_async(args=(f"user{n}@example.com",), queue=ctx.queue("rated")) for n in range(6)]
        for result in results:
            ctx.wait(result)
    starts = sorted(e.at for r in results for e in ctx.timeline.events(r.id, ["started"]))
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(starts)]
    # Celery takes a token from the worker's bucket before handing the task to the pool; the start
    # is recorded when a pool thread runs it, a few ms later, and that lag varies: a start recorded
    # late shortens the gap after it (0.087 s after a 0.154 s gap on a slow result backend, 0.028 s
    # after 0.182 s on fakeredis beside the other lanes). So: the rate over all the starts, and no
    # two starts close together (without the limit, the 4 free slots start them at once), less
    # the lateness the machine showed meanwhile: a first start recorded that late shortens the span
    # of the five gaps by as much (0.055 s, then 0.09-0.108 s, mean 0.089, on fakeredis beside the lanes).
    floor = round(max(0.0, 0.05 - lateness.worst), 3)
    least_mean = round(max(0.05, 0.09 - lateness.worst / 5), 3)
    mean = (starts[-1] - starts[0]) / len(gaps) if len(gaps) == 5 else 0.0
    ctx.check(
        "one worker: starts spaced by the limit, 0.1 s (4 pool slots free)",
        f"mean gap >= {least_mean:g} s, none < {floor:g} s (0.09 s and 0.05 s, less the machine's lateness, "
        f"{lateness.worst:.3f} s, over the 5 gaps and in one)",
        {"mean": round(mean, 3), "gaps": gaps},
        passed=len(gaps) == 5 and mean >= least_mean and min(gaps) >= floor,
    )
    ctx.start_worker(["shared"], name="rated_a", concurrency=2)
    ctx.start_worker(["shared"], name="rated_b", concurrency=2)
    shared = [send_email.apply_async(args=(f"bulk{n}@example.com",), queue=ctx.queue("shared")) for n in range(10)]
    for result in shared:
        ctx.wait(result)
    events = sorted((e for r in shared for e in ctx.timeline.events(r.id, ["started"])), key=lambda e: e.at)
    # Two starts on different workers closer than 0.1 s: together they ran faster than 10/s.
    # (Not the total span: how the 10 split between the workers is up to prefetching.)
    across = [
        round(b.at - a.at, 3) for a, b in itertools.pairwise(events) if ctx.ran_on(a.task_id) != ctx.ran_on(b.task_id)
    ]
    ctx.check(
        "two workers: starts on different workers come closer than 0.1 s (each worker has its own limit)",
        "some gap < 0.09 s",
        min(across) if across else None,
        passed=bool(across) and min(across) < 0.09,
    )
    per_worker = {ctx.ran_on(e.task_id) for e in events}
    ctx.check("... both workers took part", 2, len(per_worker))


@scenario(
    "time.revoke",
    "revoke() of a queued task stops it from running; revoke(terminate=True) stops a running one (prefork): "
    "both REVOKED, TaskRevokedError",
    timeout=20,
    lane=PREFORK_LANE,
)
def revoke(ctx: Context) -> None:
    revoker = ctx.start_worker(["revoking"], name="revoker", concurrency=1)
    blocker = sleep_for.apply_async(args=(0.3,), queue=ctx.queue("revoking"))
    ctx.timeline.wait_for(lambda e: e.task_id == blocker.id and e.kind == "started", timeout=min(5.0, ctx.remaining()))
    # Revokes go to the workers alive now (kept in their memory); reply=True waits until this one
    # has it, so the task sent next, queued behind the blocker, is certainly known as revoked.
    victim_id = str(uuid.uuid4())
    replies = ctx.app.control.revoke(victim_id, reply=True, destination=[revoker.hostname], timeout=2.0)
    victim = sleep_for.apply_async(args=(0,), queue=ctx.queue("revoking"), task_id=victim_id)
    ctx.check("the worker acknowledged the revoke", 1, len(replies or []))
    ctx.wait(blocker)
    state, raised = ctx.outcome(victim)
    ctx.check(
        "queued task revoked: state and the caller's exception",
        ("REVOKED", "TaskRevokedError"),
        (
            state,
            type(raised).__name__,
        ),
    )
    ctx.check("queued task revoked: it never started", [], [e.kind for e in ctx.events(victim.id, ["started"])])
    pf, _worker = ctx.prefork()
    running = pf.app.tasks[sleep_for.name].apply_async(args=(10,), queue=pf.queue("prefork"))
    ctx.timeline.wait_for(lambda e: e.task_id == running.id and e.kind == "started", timeout=min(5.0, ctx.remaining()))
    revoked_at = ctx.timeline.now()
    pf.app.control.revoke(running.id, terminate=True)
    state, raised = ctx.outcome(running)
    ended = ctx.timeline.first(running.id, "revoked")
    ctx.check(
        "running task, revoke(terminate=True) on prefork: state and the caller's exception",
        ("REVOKED", "TaskRevokedError"),
        (state, type(raised).__name__),
    )
    took = None if ended is None else round(ended.at - revoked_at, 3)
    ctx.check(
        "... it was stopped, not left to run its 10 s",
        "< 2 s after revoke",
        took,
        passed=took is not None and took < 2.0,
    )
