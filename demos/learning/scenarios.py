"""The learning guide's app, every part of it run: basic tasks, canvas, the two retry strategies,
real-world tasks (email over real SMTP, an image, CSV import/export, a report, temp-file cleanup)
and its beat schedule on a virtual clock."""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from celery import chain, chord, group

from celery_sim.core.harness import Harness
from celery_sim.scenarios.scenario import Context, scenario
from demos.apps import LANE, app_harness
from demos.config import RPC_NO_CHORDS, RPC_NO_STORE
from demos.learning.smtp import Inbox
from demos.reported import reported
from demos.timing.beat import VirtualClock, run_beat

APP = "demos.learning.celery_app:app"


def _task(h: Harness, name: str) -> object:
    return h.app.tasks[f"learning.{name}"]


@scenario(
    "demo.learning.basic",
    "the learning app's basic tasks: add, multiply, and a task reporting its progress",
    lane=LANE,
)
def basic(ctx: Context) -> None:
    with app_harness(ctx, APP, lasting=True) as h:
        tasks = h.app.tasks
        ctx.check("add(2, 3)", 5, ctx.wait(tasks["learning.add"].delay(2, 3)))
        ctx.check("multiply(4, 5)", 20, ctx.wait(tasks["learning.multiply"].delay(4, 5)))
        result = tasks["learning.long_task"].delay(4)
        ctx.check("long_task(4)", {"current": 4, "total": 4, "status": "done"}, ctx.wait(result))
        seen = reported(ctx, result.id, "percent", 4)
        ctx.check("its progress (update_state PROGRESS)", [25, 50, 75, 100], seen)


@scenario(
    "demo.learning.canvas",
    "the learning app's canvas: a chain, a group and a chord (squares summed)",
    skip_on=RPC_NO_CHORDS,
    lane=LANE,
)
def canvas(ctx: Context) -> None:
    with app_harness(ctx, APP, lasting=True) as h:
        t = h.app.tasks
        ctx.check(
            "chain(add(2, 3), multiply(4))",
            20,
            ctx.wait(chain(t["learning.add"].s(2, 3), t["learning.multiply"].s(4))()),
        )
        ctx.check(
            "group(add(i, i) for i in 0..4)",
            [0, 2, 4, 6, 8],
            ctx.wait(group(t["learning.add"].s(i, i) for i in range(5))()),
        )
        ctx.check(
            "chord(square(i) for i in 1..4)(total)",
            30,
            ctx.wait(chord(t["learning.square"].s(i) for i in range(1, 5))(t["learning.total"].s())),
        )


@scenario(
    "demo.learning.retries",
    "the learning app's retry strategies: exponential backoff (1, 2, 4 s) and a fixed 10 s delay, then success",
    lane=LANE,
)
def retries(ctx: Context) -> None:
    with app_harness(ctx, APP, lasting=True) as h, h.time_scale(0.001):
        t = h.app.tasks
        exponential = t["learning.exponential_retry"].delay(3)
        ctx.check("exponential: succeeds on attempt", 4, ctx.wait(exponential))
        ctx.check(
            "exponential: retry countdowns (s)",
            [1.0, 2.0, 4.0],
            [round(c or 0, 1) for c in ctx.timeline.countdowns(exponential.id)],
        )
        fixed = t["learning.fixed_retry"].delay(2)
        ctx.check("fixed: succeeds on attempt", 3, ctx.wait(fixed))
        ctx.check(
            "fixed: retry countdowns (s)", [10.0, 10.0], [round(c or 0, 1) for c in ctx.timeline.countdowns(fixed.id)]
        )


@scenario(
    "demo.learning.real_world",
    "the learning app's real-world tasks: email over real SMTP (refused twice, retried, delivered), an image with "
    "progress, CSV export and import, a report, temp-file cleanup",
    skip_on=RPC_NO_STORE,
    lane=LANE,
)
def real_world(ctx: Context) -> None:
    with app_harness(ctx, APP, lasting=True) as h, tempfile.TemporaryDirectory(prefix="csim-learning-") as folder:
        _email(ctx, h)
        _image(ctx, h, Path(folder))
        _data(ctx, h, Path(folder))


def _email(ctx: Context, h: Harness) -> None:
    with Inbox(refuse_first=2) as inbox, h.time_scale(0.001):
        sent = h.app.tasks["learning.send_email"].delay(
            "reader@example.com", "Welcome", "Hello from Celery", inbox.host, inbox.port
        )
        state, outcome = ctx.outcome(sent)
        delivered = inbox.wait_for(1, 5.0) if state == "SUCCESS" else []
    ctx.check(
        "email: refused twice (451), retried, sent on attempt",
        ("SUCCESS", 2, 3),
        (state, inbox.refused, outcome.get("attempts") if isinstance(outcome, dict) else repr(outcome)),
    )
    ctx.check(
        "email: the message the SMTP server received",
        [{"To": "reader@example.com", "Subject": "Welcome", "X-Attempt": "3", "body": "Hello from Celery"}],
        [
            {"To": m["To"], "Subject": m["Subject"], "X-Attempt": m["X-Attempt"], "body": str(m.get_payload()).strip()}
            for m in delivered
        ],
    )
    queues = {h.ns.logical(str(e.data.get("queue"))) for e in ctx.events(sent.id, ["published"])}
    ctx.check("email: every attempt routed to", {"email"}, queues)


def _image(ctx: Context, h: Harness, folder: Path) -> None:
    out = folder / "thumb.pgm"
    result = h.app.tasks["learning.process_image"].delay(64, 48, 4, str(out))
    done = ctx.wait(result)
    stages = reported(ctx, result.id, "stage", 4)
    ctx.check("image: progress by stage", ["generated", "grayscale", "thumbnail", "written"], stages)
    data = out.read_bytes()
    magic, size, depth, pixels = data.split(b"\n", 3)
    ctx.check(
        "image: a 16x12 PGM thumbnail",
        ("P5", "16 12", "255", 16 * 12, 16, 12),
        (magic.decode(), size.decode(), depth.decode(), len(pixels), done["width"], done["height"]),
    )
    ctx.check("image: brighter to the right (the red gradient)", True, pixels[0] < pixels[15])


def _data(ctx: Context, h: Harness, folder: Path) -> None:
    t = h.app.tasks
    rows = [{"id": str(i), "amount": f"{i * 2.5:.1f}"} for i in range(1, 5)]
    path = folder / "orders.csv"
    ctx.check("export_csv: rows written", 4, ctx.wait(t["learning.export_csv"].delay(rows, str(path))))
    with path.open("a") as handle:
        handle.write("5,not-a-number\n")
    imported = ctx.wait(t["learning.import_csv"].delay(str(path)))
    ctx.check(
        "import_csv: rows read back, the bad line reported",
        ([2.5, 5.0, 7.5, 10.0], [6]),
        ([r["amount"] for r in imported["rows"]], imported["rejected_lines"]),
    )
    clean = folder / "clean.csv"
    ctx.wait(t["learning.export_csv"].delay(rows, str(clean)))
    report = ctx.wait(t["learning.generate_report"].delay(str(clean), str(folder / "report.json")))
    ctx.check(
        "generate_report", {"rows": 4, "total": 25.0, "mean": 6.25}, json.loads((folder / "report.json").read_text())
    )
    ctx.check("generate_report returns what it wrote", report, json.loads((folder / "report.json").read_text()))
    scratch = folder / "scratch"
    scratch.mkdir()
    for name, age in (("old-1.tmp", 3600), ("old-2.tmp", 120), ("new.tmp", 0)):
        (scratch / name).write_text(name)
        os.utime(scratch / name, (time.time() - age, time.time() - age))
    removed = ctx.wait(t["learning.cleanup_temp_files"].delay(str(scratch), max_age_s=60))
    ctx.check(
        "cleanup_temp_files: the old files removed, the new one kept",
        (["old-1.tmp", "old-2.tmp"], ["new.tmp"]),
        (removed, sorted(p.name for p in scratch.iterdir())),
    )


START = datetime(2026, 12, 1, 23, 58, 0, tzinfo=timezone.utc)


@scenario(
    "demo.learning.beat",
    "the learning app's beat schedule on a virtual clock: cleanup every 30 s and the daily report at 02:00, "
    "each sent by Celery's scheduler and run by the worker",
    skip_on=RPC_NO_STORE,
    lane=LANE,
)
def beat(ctx: Context) -> None:
    from demos.learning.celery_app import beat_schedule

    with app_harness(ctx, APP, lasting=True) as h, tempfile.TemporaryDirectory(prefix="csim-beat-") as folder:
        clock = VirtualClock(START)
        mark = ctx.timeline.mark()
        entries = beat_schedule(folder, nowfun=clock.now)
        cleanup = run_beat(
            ctx,
            {"cleanup-temp-files": entries["cleanup-temp-files"]},
            clock,
            START + timedelta(minutes=2, seconds=1),
            app=h.app,
        )
        ctx.check(
            "cleanup every 30 s over 2 virtual minutes: sent at",
            [f"{START + timedelta(seconds=30 * k):%H:%M:%S}" for k in range(1, 5)],
            [f"{when:%H:%M:%S}" for _, when in cleanup.sent],
        )
        clock = VirtualClock(START)
        entries = beat_schedule(folder, nowfun=clock.now)
        daily = run_beat(ctx, {"daily-report": entries["daily-report"]}, clock, START + timedelta(days=2), app=h.app)
        ctx.check(
            "the daily report over 2 virtual days: sent at",
            ["2026-12-02 02:00", "2026-12-03 02:00"],
            [f"{when:%Y-%m-%d %H:%M}" for _, when in daily.sent],
        )
        values = [ctx.wait(h.app.AsyncResult(e.task_id)) for e in ctx.timeline.events(kinds=["published"], since=mark)]
        ctx.check(
            "every dispatch ran on the worker",
            (4, 2),
            (sum(1 for v in values if v == []), sum(1 for v in values if str(v).startswith("daily report"))),
        )
