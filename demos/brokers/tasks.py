"""Tasks of the broker demo, written as the guides write them (with short times)."""

from __future__ import annotations

import os
import time
from typing import Any

from celery import shared_task


@shared_task(name="demos.brokers.send_notification")
def send_notification(priority: int) -> int:
    """Returns the priority it was sent with, so the order of execution shows the broker's order."""
    return priority


def _charge(task: Any, order: str, seconds: float) -> dict[str, Any]:
    task.update_state(state="PROGRESS", meta={"pid": os.getpid(), "order": order})
    time.sleep(seconds)
    return {"order": order, "pid": os.getpid()}


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, name="demos.brokers.charge_card_safely")
def charge_card_safely(self: Any, order: str, seconds: float = 0.3) -> dict[str, Any]:
    """Acknowledged after it returns; requeued if the process running it dies."""
    return _charge(self, order, seconds)


@shared_task(bind=True, name="demos.brokers.charge_card")
def charge_card(self: Any, order: str, seconds: float = 0.3) -> dict[str, Any]:
    """Celery's default: acknowledged when a worker takes it, before it runs."""
    return _charge(self, order, seconds)


@shared_task(name="demos.brokers.send_reminder")
def send_reminder(user: str) -> str:
    return f"reminded {user}"


@shared_task(bind=True, acks_late=True, name="demos.brokers.reject_until_redelivered")
def reject_until_redelivered(self: Any, key: str) -> str:
    """The guides' 'requeue once' pattern: reject with requeue unless this is a redelivery."""
    from celery.exceptions import Reject

    from demos import ledger

    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    ledger.record(self.app, key, {"redelivered": redelivered})
    if not redelivered:
        raise Reject("first delivery: requeue it", requeue=True)
    return "ran on the redelivery"
