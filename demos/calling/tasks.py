"""Tasks of the calling demo, as a tutorial would write them."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from demos.where import where


@shared_task(name="demos.calling.add")
def add(x: int, y: int) -> int:
    return x + y


@shared_task(bind=True, name="demos.calling.whoami")
def whoami(self: Any, tag: str) -> dict[str, Any]:
    """Returns where it ran, so the caller can see which calling mode used the broker."""
    return {"tag": tag, **where(self)}
