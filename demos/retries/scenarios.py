"""Retries: what self.retry, autoretry_for, backoff and max_retries really do, in compressed time.

Every scenario runs its tasks under a time scale: Celery computes each retry's ETA as usual, and
the harness shortens the delay as the message is published (``celery_sim.core.timewarp``). The checks
read the countdowns Celery scheduled from the retry messages (the timeline keeps the original ETA).
"""

from __future__ import annotations

import uuid
from typing import Any

from celery.exceptions import MaxRetriesExceededError
from celery.result import AsyncResult

from celery_sim.scenarios.scenario import Context, scenario
from demos import ledger
from demos.config import RPC_NO_STORE
from demos.retries.tasks import (
    call_api,
    call_api_jittered,
    charge_once,
    charge_unsafe,
    fetch_page,
    poll_default,
    poll_forever,
    poll_with_exc,
    retry_no_throw,
    run_ai_task,
    sync_inventory,
)

#: The queue of the one-slot worker each scenario here starts (see _send).
RETRIES_QUEUE = "retries"

#: One second of a retry policy takes one millisecond.
SCALE = 0.001


def _send(ctx: Context, task: Any, *args: Any, **kwargs: Any) -> AsyncResult[Any]:
    """``task.delay(*args, **kwargs)``, consumed by the run's worker with one pool slot.

    Celery marks an attempt RETRY just *after* it publishes the retry; with a free second slot and
    a compressed countdown the retry can end first, and the late RETRY then replaces its FAILURE
    (a real Celery race, measured on a loaded machine; see the README). With one slot the retry
    waits until the attempt that sent it has finished writing, whatever the load: the order of
    states these scenarios are about. Retries go back to the queue the task came from.
    """
    ctx.lasting_worker([RETRIES_QUEUE], name="retries", concurrency=1)  # one for the whole family
    return task.apply_async(args, kwargs, queue=ctx.queue(RETRIES_QUEUE))


def _settled(ctx: Context, result: AsyncResult[Any]) -> tuple[str, Any]:
    """(state, value or the exception's repr): a task that fails is a failed check, not an error."""
    state, value = ctx.outcome(result)
    return state, value if state == "SUCCESS" else repr(value)


def _rounded(countdowns: list[float | None]) -> list[float | None]:
    """Countdowns as Celery computed them (read back from an ETA, they are off by microseconds)."""
    return [None if c is None else round(c, 2) for c in countdowns]


def _waits_honoured(ctx: Context, task_id: str) -> tuple[bool, list[str]]:
    """Whether each retry started no earlier than its (compressed) ETA; the waits, as text."""
    sent = [e for e in ctx.published(task_id) if int(e.data.get("retries") or 0) > 0]
    started = {int(e.data.get("retries") or 0): e.at for e in ctx.events(task_id, ["started"])}
    ok, shown = True, []
    for event in sent:
        attempt = int(event.data["retries"])
        due = float(event.data.get("due_in") or 0)
        waited = started.get(attempt, float("nan")) - event.at
        ok = ok and waited >= due - 0.001
        shown.append(f"retry {attempt}: due after {due * 1000:.0f} ms, started after {waited * 1000:.1f} ms")
    return ok and bool(sent), shown


@scenario(
    "retries.manual",
    "raise self.retry(exc=exc, countdown=30): RETRY, RETRY, then SUCCESS; retries counts up",
)
def manual(ctx: Context) -> None:
    with ctx.time_scale(SCALE):
        result = _send(ctx, fetch_page, "https://example.com", failures=2)
    states = ctx.watch(result)
    # PENDING is seen only if the caller reads before the first attempt ends (not on every broker).
    ctx.check(
        "states the caller sees: (PENDING), RETRY, SUCCESS",
        ["RETRY", "SUCCESS"],
        states[1:] if states[:1] == ["PENDING"] else states,
    )
    ctx.check("value after two retries", {"url": "https://example.com", "attempts": 3}, ctx.outcome(result)[1])
    ctx.check("request.retries of each attempt counts up", [0, 1, 2], ctx.timeline.attempts(result.id))
    ctx.check(
        "countdown Celery scheduled for each retry (s)", [30.0, 30.0], _rounded(ctx.timeline.countdowns(result.id))
    )
    honoured, waits = _waits_honoured(ctx, result.id)
    ctx.check("no retry ran before its ETA (30 s at scale 1/1000)", "each wait >= its ETA", waits, passed=honoured)


@scenario(
    "retries.autoretry",
    "autoretry_for=(ConnectionError,), max_retries=3: 4 attempts, then the caller gets ConnectionError itself",
)
def autoretry(ctx: Context) -> None:
    with ctx.time_scale(SCALE):
        failing = _send(ctx, sync_inventory, "store-7", failures=99)
        recovering = _send(ctx, sync_inventory, "store-8", failures=1)
    state, raised = ctx.outcome(failing)
    ctx.check("final state once retries run out", "FAILURE", state)
    ctx.check(
        "the caller gets the original exception type (not a generic error)",
        "ConnectionError",
        type(raised).__name__,
    )
    ctx.check("message of the original exception", "store-7: inventory service unreachable", str(raised))
    ctx.check("attempts: the first call plus max_retries=3", [0, 1, 2, 3], ctx.timeline.attempts(failing.id))
    ctx.check(
        "retry_kwargs countdown of each retry (s)", [5.0, 5.0, 5.0], _rounded(ctx.timeline.countdowns(failing.id))
    )
    ctx.check(
        "a task that recovers after one retry succeeds", ("SUCCESS", "store-8: synced"), _settled(ctx, recovering)
    )


@scenario(
    "retries.backoff",
    "retry_backoff / retry_backoff_max / retry_jitter: the countdowns Celery scheduled follow the documented formula",
)
def backoff(ctx: Context) -> None:
    with ctx.time_scale(SCALE):
        plain = _send(ctx, call_api, "/orders")
    ctx.outcome(plain)
    ctx.check(
        "retry_backoff=2, backoff_max=20, no jitter: min(20, 2 * 2**n)",
        [2.0, 4.0, 8.0, 16.0, 20.0, 20.0],
        _rounded(ctx.timeline.countdowns(plain.id)),
    )
    # Defaults: factor 1 s, cap 600 s; up to 600 s per retry, so a stronger compression.
    with ctx.time_scale(SCALE / 10):
        jittered = _send(ctx, call_api_jittered, "/orders")
    state, raised = ctx.outcome(jittered)
    # Full jitter draws each countdown from [0, cap]: a wrong cap can pass the window check by
    # chance, so the policy Celery's autoretry reads from the task is pinned to the defaults too.
    # (Read as Celery's autoretry reads them: the task's options, else its defaults.)
    task = ctx.app.tasks[call_api_jittered.name]
    ctx.check(
        "the jittered task runs with Celery's defaults: retry_backoff=True (factor 1), retry_backoff_max=600, "
        "retry_jitter=True",
        (True, 600, True),
        (
            getattr(task, "retry_backoff", False),
            getattr(task, "retry_backoff_max", 600),
            getattr(task, "retry_jitter", True),
        ),
    )
    caps = [min(600, 2**n) for n in range(10)]
    # A jittered countdown of 0 is sent with no ETA at all (Celery drops a zero countdown).
    got = [c or 0.0 for c in ctx.timeline.countdowns(jittered.id)]
    within = len(got) == len(caps) and all(-0.01 <= c <= cap + 0.01 for c, cap in zip(got, caps, strict=False))
    ctx.check(
        "retry_jitter=True: each countdown is in [0, min(600, 2**n)] (full jitter)",
        [f"0..{cap}" for cap in caps],
        _rounded(got),
        passed=within,
    )
    ctx.check(
        "jitter really randomises: some countdown is below its cap",
        "at least one below",
        sum(1 for c, cap in zip(got, caps, strict=False) if c < cap - 0.5),
        passed=any(c < cap - 0.5 for c, cap in zip(got, caps, strict=False)),
    )
    ctx.check("after max_retries=10 the caller gets the TimeoutError", "TimeoutError", type(raised).__name__)
    ctx.check("final state", "FAILURE", state)


@scenario(
    "retries.selective",
    "AI-task-runner pattern: network errors retry (2**n s), ValueError fails at once, other errors retry after 60 s",
)
def selective(ctx: Context) -> None:
    with ctx.time_scale(SCALE):
        network = _send(ctx, run_ai_task, "summarise", failure="network")
        bad_input = _send(ctx, run_ai_task, "", failure="bad_input")
        other = _send(ctx, run_ai_task, "translate", failure="other")
    ctx.check(
        "network errors are retried, then it succeeds", ("SUCCESS", "answer to 'summarise'"), _settled(ctx, network)
    )
    ctx.check("network retries back off: 2**retries s", [1.0, 2.0], _rounded(ctx.timeline.countdowns(network.id)))
    state, raised = ctx.outcome(bad_input)
    ctx.check("ValueError reaches the caller", "ValueError", type(raised).__name__)
    ctx.check(
        "ValueError fails at once: one attempt, no retry sent",
        ([0], []),
        (
            ctx.timeline.attempts(bad_input.id),
            ctx.timeline.countdowns(bad_input.id),
        ),
    )
    ctx.check("state after a ValueError", "FAILURE", state)
    ctx.check("other errors are retried", ("SUCCESS", "answer to 'translate'"), _settled(ctx, other))
    ctx.check("... with the longer delay", [60.0], _rounded(ctx.timeline.countdowns(other.id)))


@scenario(
    "retries.max_exceeded",
    "max_retries: MaxRetriesExceededError without exc, the original exception with exc, None retries forever, throw=False",
    skip_on={
        "rpc": "rpc:// keeps no stored result: the caller reads the last state message, so the value of the "
        "retry after retry(throw=False) replaces the first SUCCESS (which the Redis and database backends keep)"
    },
)
def max_exceeded(ctx: Context) -> None:
    with ctx.time_scale(SCALE):
        default = _send(ctx, poll_default)
        with_exc = _send(ctx, poll_with_exc)
        forever = _send(ctx, poll_forever, failures=7)
    # The story needs the retry to come after the first attempt has stored its SUCCESS: its 60 s
    # countdown becomes 0.3 s here (at 0.06 s, a first attempt on db+sqlite, waiting for the
    # database while the other tasks wrote, stored its SUCCESS after the retry's).
    with ctx.time_scale(0.005):
        no_throw = _send(ctx, retry_no_throw)
    state, raised = ctx.outcome(default)
    ctx.check(
        "retry() without exc: MaxRetriesExceededError once retries run out",
        "MaxRetriesExceededError",
        type(raised).__name__,
        passed=isinstance(raised, MaxRetriesExceededError),
    )
    ctx.check("max_retries defaults to 3: four attempts", [0, 1, 2, 3], ctx.timeline.attempts(default.id))
    ctx.check("... and the task ends FAILURE", "FAILURE", state)
    _state, raised = ctx.outcome(with_exc)
    ctx.check(
        "retry(exc=ConnectionError(...)): the caller gets ConnectionError", "ConnectionError", type(raised).__name__
    )
    ctx.check("max_retries=2: three attempts", [0, 1, 2], ctx.timeline.attempts(with_exc.id))
    ctx.check(
        "max_retries=None: retries past the default of 3 (7 here) and succeeds", ("SUCCESS", 7), _settled(ctx, forever)
    )
    # throw=False: this attempt returns normally and is stored as SUCCESS, while the retry it
    # scheduled is still to run. The retry runs and succeeds too, but Celery's result backends
    # never overwrite a SUCCESS (a guard against duplicate runs): its value is dropped.
    first = ctx.wait(no_throw)
    ctx.check("throw=False: the caller's get() returns the first attempt's value", "first attempt returned", first)
    ctx.eventually(lambda: ctx.events(no_throw.id, ["succeeded"]), lambda done: len(done) >= 2)
    ctx.check(
        "... the scheduled retry still runs and succeeds on the worker",
        ["first attempt returned", "retry returned"],
        [e.data.get("result") for e in ctx.events(no_throw.id, ["succeeded"])],
    )
    later = AsyncResult(no_throw.id, app=ctx.app).get(timeout=ctx.remaining())
    ctx.check("... but the stored result stays the first SUCCESS", "first attempt returned", later)


@scenario(
    "retries.idempotent",
    "a retry after a side effect repeats it; an idempotency key makes the charge happen once",
    skip_on=RPC_NO_STORE,
)
def idempotent(ctx: Context) -> None:
    unsafe_order, safe_order = f"order-{uuid.uuid4().hex[:6]}", f"order-{uuid.uuid4().hex[:6]}"
    with ctx.time_scale(SCALE):
        unsafe = _send(ctx, charge_unsafe, unsafe_order)
        safe = _send(ctx, charge_once, safe_order, idempotency_key=f"charge-{safe_order}")
    ctx.check(
        "without a key: the task succeeds after one retry",
        ("SUCCESS", f"{unsafe_order}: charged, receipt sent"),
        _settled(ctx, unsafe),
    )
    ctx.check("... and the customer was charged twice", 2, len(ledger.read(ctx.app, f"charges-{unsafe_order}")))
    ctx.check(
        "with an idempotency key: it succeeds after one retry",
        ("SUCCESS", f"{safe_order}: charged, receipt sent"),
        _settled(ctx, safe),
    )
    ctx.check("... the task ran twice", [0, 1], ctx.timeline.attempts(safe.id))
    ctx.check(
        "... and the customer was charged once",
        [{"order": safe_order, "attempt": 0}],
        ledger.read(ctx.app, f"charges-{safe_order}"),
    )
