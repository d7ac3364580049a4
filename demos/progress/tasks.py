"""The progress demo task, as the guides write it."""

from __future__ import annotations

import time
from typing import Any

from celery import shared_task

#: How long one item takes: STARTED, before the first PROGRESS, lasts as long.
STEP_S = 0.03


@shared_task(bind=True, track_started=True, name="demos.progress.process_items")
def process_items(self: Any, total: int, step_s: float = STEP_S) -> dict[str, Any]:
    """Processes ``total`` items, reporting PROGRESS after each one."""
    for current in range(1, total + 1):
        time.sleep(step_s)  # stands for the work on one item
        self.update_state(state="PROGRESS", meta={"current": current, "total": total})
    return {"current": total, "total": total, "status": "done"}
