"""What a task reported with ``update_state``, as the timeline has it once every step has arrived."""

from __future__ import annotations

from typing import Any

from celery_sim.scenarios.scenario import Context

#: How long the last steps may trail the task's end (bounded: a step never sent fails the check).
TRAIL_S = 2.0


def reported(ctx: Context, task_id: str, key: str, steps: int) -> list[Any]:
    """``meta[key]`` of each progress event of ``task_id``, once ``steps`` have arrived (or after TRAIL_S).

    A worker process sends progress from the pool process, over its own connection, and the task's
    end from the main process, over another: the last steps can arrive after the end (seen on
    RabbitMQ), so a caller whose ``get()`` returned may read the timeline too early.
    """

    def seen() -> list[Any]:
        return [e.data.get("meta", {}).get(key) for e in ctx.events(task_id, ["progress"])]

    return ctx.eventually(seen, lambda found: len(found) >= steps, timeout=TRAIL_S)
