"""Tasks for the doctor's scenarios: one that holds a pool slot until released, one that stores nothing."""

from __future__ import annotations

import time
from typing import Any

from celery import shared_task

from demos import ledger

#: The longest a held task waits for its release (so that a scenario that fails never hangs a worker).
HOLD_MAX_S = 10.0


@shared_task(bind=True, name="demos.doctor.hold")
def hold(self: Any, key: str, max_s: float = HOLD_MAX_S) -> str:
    """Keep a pool slot busy until the caller releases ``key`` (a ledger entry) or ``max_s`` pass.

    The ledger lives in the result backend, so the release reaches a worker in any process.
    """
    deadline = time.monotonic() + max_s
    while time.monotonic() < deadline:
        if ledger.read(self.app, key):
            return "released"
        time.sleep(0.005)
    return "not released"


def release(app: Any, key: str) -> None:
    """Let the tasks held on ``key`` end."""
    ledger.record(app, key, {"released": True})


@shared_task(ignore_result=True, name="demos.doctor.quiet")
def quiet(x: int) -> int:
    return x
