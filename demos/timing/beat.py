"""Beat: interval and crontab schedules, observed over virtual days in milliseconds.

Celery's schedules take a ``nowfun``: here it reads a virtual clock. Celery's own ``Scheduler``
decides what is due and sends it (``tick()`` returns how long until the next entry is due); the
scenario advances the virtual clock by that instead of sleeping (by 10 ms when tick() returns 0
without sending: beat would loop at once while real time moves on). The tasks it sends are real
messages, run by the real worker.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from celery.beat import Scheduler
from celery.schedules import crontab, schedule

from celery_sim.scenarios.scenario import Context, scenario

START = datetime(2026, 11, 21, 23, 59, 0, tzinfo=timezone.utc)


class VirtualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class _Observed(Scheduler):
    """Celery's Scheduler, noting the virtual time of each entry it sends."""

    def __init__(self, *args: Any, clock: VirtualClock, **kwargs: Any) -> None:
        self.clock = clock
        self.sent: list[tuple[str, datetime]] = []
        super().__init__(*args, **kwargs)

    def apply_entry(self, entry: Any, producer: Any = None) -> None:
        self.sent.append((entry.name, self.clock.now()))
        super().apply_entry(entry, producer=producer)


def run_beat(
    ctx: Context, entries: dict[str, dict[str, Any]], clock: VirtualClock, until: datetime, app: Any = None
) -> _Observed:
    """Run Celery's scheduler (of ``app``, default the run's) over virtual time from the clock's
    start to ``until``; returns it, with what it sent and when (``.sent``)."""
    scheduler = _Observed(app or ctx.app, lazy=True, clock=clock)
    scheduler.merge_inplace(entries)  # beat_schedule as a user writes it (no default entries)
    while clock.now() < until and ctx.remaining() > 0:
        sent = len(scheduler.sent)
        wait = scheduler.tick()
        if wait > 0:
            clock.advance(min(wait, (until - clock.now()).total_seconds() + 1))
        elif len(scheduler.sent) == sent:
            # Beat's loop calls tick() again at once when it returns 0, while real time moves on
            # (tick compares whole seconds, is_due exact ones): let 10 ms of virtual time pass.
            clock.advance(0.01)
    scheduler.close()
    return scheduler


@scenario(
    "beat.schedules",
    "beat runs an every-30-s entry and a crontab(hour=2, minute=0) entry on time, over 3 virtual days",
)
def schedules(ctx: Context) -> None:
    clock = VirtualClock(START)
    every_30s = schedule(timedelta(seconds=30), nowfun=clock.now, app=ctx.app)
    nightly = crontab(hour=2, minute=0, nowfun=clock.now, app=ctx.app)
    ctx.check(
        "every 30 s: next due 30 s after start",
        "2026-11-21 23:59:30+00:00",
        str(START + every_30s.remaining_estimate(START)),
    )
    ctx.check(
        "crontab(hour=2, minute=0): next due at 02:00 UTC",
        "2026-11-22 02:00:00+00:00",
        str(START + nightly.remaining_estimate(START)),
    )
    mark = ctx.timeline.mark()
    interval = run_beat(
        ctx,
        {"cleanup-every-30s": {"task": "demos.timing.cleanup_temp_files", "schedule": every_30s}},
        clock,
        START + timedelta(minutes=3, seconds=1),
    )
    ctx.check(
        "every 30 s over 3 virtual minutes: sent at",
        [f"{START + timedelta(seconds=30 * k):%H:%M:%S}" for k in range(1, 7)],
        [f"{when:%H:%M:%S}" for _, when in interval.sent],
    )
    clock = VirtualClock(START)
    daily = run_beat(
        ctx,
        {
            "daily-report-2am": {
                "task": "demos.timing.daily_report",
                "schedule": crontab(hour=2, minute=0, nowfun=clock.now, app=ctx.app),
            }
        },
        clock,
        START + timedelta(days=3),
    )
    ctx.check(
        "daily at 02:00 over 3 virtual days: sent at",
        ["2026-11-22 02:00", "2026-11-23 02:00", "2026-11-24 02:00"],
        [f"{when:%Y-%m-%d %H:%M}" for _, when in daily.sent],
    )
    sent = [e for e in ctx.timeline.events(kinds=["published"], since=mark)]
    results = [ctx.app.AsyncResult(e.task_id) for e in sent]
    values = [ctx.wait(r) for r in results]
    ctx.check(
        "every dispatch is a real message the worker ran",
        {"cleaned": 6, "daily report sent": 3},
        {v: values.count(v) for v in sorted(set(values))},
    )
