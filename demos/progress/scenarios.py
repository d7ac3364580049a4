"""Progress: what a caller polling result.state and result.info really sees."""

from __future__ import annotations

import uuid
from typing import Any

from celery.result import AsyncResult

from celery_sim.scenarios.scenario import Context, scenario
from demos.lateness import Lateness
from demos.progress.tasks import STEP_S, process_items
from demos.reported import reported

LIFECYCLE = ["PENDING", "STARTED", "PROGRESS", "SUCCESS"]
TOTAL = 8
#: The steps of each task sent again when the caller missed STARTED (which lasts one step).
RETRY_STEPS_S = (0.15, 0.4)


def _in_lifecycle_order(states: list[str]) -> bool:
    ranks = [LIFECYCLE.index(s) if s in LIFECYCLE else -1 for s in states]
    return -1 not in ranks and ranks == sorted(ranks)


@scenario(
    "progress.states", "update_state('PROGRESS') reaches a polling caller: PENDING, STARTED, PROGRESS..., SUCCESS"
)
def states(ctx: Context) -> None:
    ctx.check(
        "an id no worker has seen reads PENDING (PENDING means 'unknown')",
        "PENDING",
        AsyncResult(str(uuid.uuid4()), app=ctx.app).state,
    )
    # Published before any worker consumes its queue, so it is certainly still PENDING when read.
    result = process_items.apply_async(args=(TOTAL,), queue=ctx.queue("progress"))
    currents: list[int] = []

    def on_change(state: str, info: Any) -> None:
        if state == "PROGRESS" and isinstance(info, dict):
            current = int(info.get("current", 0))
            if not currents or current != currents[-1]:
                currents.append(current)
                ctx.progress("process_items", current, int(info.get("total", TOTAL)))

    first = result.state
    ctx.start_worker_meanwhile(["progress"], name="progress")
    with Lateness() as lateness:
        observed = ctx.watch(result, on_change)
    if observed[0] != first:
        observed.insert(0, first)
    final: Any = ctx.wait(result)
    ctx.check(
        "states seen by the caller are in lifecycle order",
        " -> ".join(LIFECYCLE),
        " -> ".join(observed),
        passed=_in_lifecycle_order(observed),
    )
    seen, missed_s = set(observed), STEP_S
    for step_s in RETRY_STEPS_S:
        if "STARTED" in seen:
            break
        # STARTED lasts one step: a caller thread the machine wakes later than that misses it.
        # Each retry is a new task with longer steps; without track_started none shows STARTED.
        ctx.warn(
            f"the caller missed STARTED, which lasted {missed_s:.2f} s (the machine woke threads up to "
            f"{lateness.worst * 1000:.0f} ms late); sent again with {step_s:.2f} s steps"
        )
        again = process_items.apply_async(args=(2,), kwargs={"step_s": step_s}, queue=ctx.queue("progress"))
        with Lateness() as lateness:
            seen.update(ctx.watch(again))
        ctx.wait(again)
        missed_s = step_s
    ctx.check(
        "caller saw each state (track_started=True gives STARTED)", LIFECYCLE, [s for s in LIFECYCLE if s in seen]
    )
    # A poller may miss the last PROGRESS: SUCCESS overwrites it as soon as the task returns.
    ctx.check(
        "PROGRESS info seen by the caller counts up",
        f"increasing, within 1..{TOTAL}",
        currents,
        passed=bool(currents) and currents == sorted(set(currents)) and currents[-1] <= TOTAL,
    )
    steps = reported(ctx, result.id, "current", TOTAL)
    ctx.check("worker reported every step, in order", list(range(1, TOTAL + 1)), steps)
    ctx.check("final result", {"current": TOTAL, "total": TOTAL, "status": "done"}, final)
