"""Tasks for the monitor's scenarios."""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(bind=True, max_retries=1, name="demos.monitor.flaky")
def flaky(self: Any) -> str:
    """Fails its first attempt and retries at once; the retry succeeds."""
    if self.request.retries == 0:
        raise self.retry(exc=ConnectionError("first attempt fails"), countdown=0)
    return "ok on retry"


@shared_task(name="demos.monitor.limited")
def limited(n: int) -> int:
    """A task whose rate limit is changed at run time by remote control."""
    return n
