"""Tasks of the time demo, written as the guides write them (with short times, so runs stay quick)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from celery import shared_task


@shared_task(name="demos.timing.generate_report")
def generate_report(seconds: float) -> str:
    """A report that takes ``seconds`` to build."""
    time.sleep(seconds)
    return "report ready"


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
