"""Tasks of the time demo, written as the guides write them (with short times, so runs stay quick)."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

#: Limits of the time-limit demo tasks, in seconds.
SOFT_LIMIT_S = 0.3
HARD_LIMIT_S = 0.4


@shared_task(name="demos.timing.generate_report")
def generate_report(seconds: float) -> str:
    """A report that takes ``seconds`` to build."""
    time.sleep(seconds)
    return "report ready"


@shared_task(bind=True, soft_time_limit=SOFT_LIMIT_S, name="demos.timing.resize_images")
def resize_images(self: Any, count: int, step_s: float = 0.05) -> dict[str, Any]:
    """Catches SoftTimeLimitExceeded, cleans up and returns what it managed, as the guides advise."""
    started_at, started = time.time(), time.monotonic()
    done = 0
    try:
        for _ in range(count):
            time.sleep(step_s)
            done += 1
    except SoftTimeLimitExceeded:
        elapsed = time.monotonic() - started
        raised_at = time.time()
        return {
            "status": "cleaned up",
            "done": done,
            "elapsed": elapsed,
            "started_at": started_at,
            "raised_at": raised_at,
            "pid": os.getpid(),
        }
    return {"status": "finished", "done": done, "elapsed": time.monotonic() - started, "pid": os.getpid()}


@shared_task(bind=True, time_limit=HARD_LIMIT_S, name="demos.timing.crunch_numbers")
def crunch_numbers(self: Any, seconds: float) -> dict[str, Any]:
    """Runs past its hard time limit: the pool kills the process running it (it says which first)."""
    self.update_state(state="PROGRESS", meta={"pid": os.getpid(), "started_at": time.time()})
    started = time.monotonic()
    time.sleep(seconds)
    return {"status": "finished", "elapsed": time.monotonic() - started, "pid": os.getpid()}


@shared_task(bind=True, name="demos.timing.stamp")
def stamp(self: Any) -> dict[str, Any]:
    """When it ran, and the ETA Celery gave the request."""
    return {"eta": self.request.eta, "ran_at": datetime.now(timezone.utc).isoformat()}


@shared_task(rate_limit="10/s", name="demos.timing.send_email")
def send_email(to: str) -> str:
    """Rate-limited to 10 per second (per worker)."""
    return f"sent to {to}"


@shared_task(name="demos.timing.sleep_for")
def sleep_for(seconds: float) -> float:
    """Keeps a pool slot busy for ``seconds``."""
    time.sleep(seconds)
    return seconds


@shared_task(name="demos.timing.cleanup_temp_files")
def cleanup_temp_files() -> str:
    return "cleaned"


@shared_task(name="demos.timing.daily_report")
def daily_report() -> str:
    return "daily report sent"
