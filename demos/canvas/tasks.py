"""Tasks of the canvas demo, as the guides write them (plus a little simulated work)."""

from __future__ import annotations

import time
from typing import Any

from celery import Task, current_app, shared_task

from demos import ledger


@shared_task(name="demos.canvas.fetch")
def fetch(source: str) -> str:
    return f"fetched:{source}"


@shared_task(name="demos.canvas.process")
def process(data: str) -> str:
    return f"processed:{data}"


@shared_task(name="demos.canvas.save")
def save(data: str) -> str:
    return f"saved:{data}"


@shared_task(name="demos.canvas.validate")
def validate(data: str) -> str:
    return f"valid:{data}"


@shared_task(name="demos.canvas.combine")
def combine(results: list[str]) -> list[str]:
    return sorted(results)


@shared_task(name="demos.canvas.notify")
def notify(batches: list[str]) -> str:
    return f"notified: {len(batches)} batches: {', '.join(batches)}"


@shared_task(name="demos.canvas.add")
def add(x: int, y: int, work_s: float = 0.0) -> int:
    time.sleep(work_s)  # stands for real work, so that concurrent members overlap visibly
    return x + y


@shared_task(name="demos.canvas.double")
def double(x: int) -> int:
    return 2 * x


@shared_task(name="demos.canvas.value_after")
def value_after(value: int, work_s: float) -> int:
    time.sleep(work_s)
    return value


@shared_task(name="demos.canvas.collect")
def collect(values: list[int]) -> list[int]:
    return values


@shared_task(name="demos.canvas.fail")
def fail(message: str) -> None:
    raise ValueError(message)


@shared_task(bind=True, name="demos.canvas.on_success")
def on_success(self: Any, result: Any, key: str) -> None:
    """A link callback: Celery sends it as a task, with the parent's result first."""
    ledger.record(self.app, key, {"callback": "on_success", "result": result, "parent_id": self.request.parent_id})


@shared_task(name="demos.canvas.on_failure")
def on_failure(request: Any, exc: BaseException, traceback: Any, key: str) -> None:
    """An errback with (request, exc, traceback): Celery calls it directly inside the worker.

    Not ``bind=True``: Celery sends a bound errback as a task with only the failed task's id.
    """
    ledger.record(current_app, key, {"callback": "on_failure", "task_id": request.id, "exception": repr(exc)})


@shared_task(name="demos.canvas.join_inside")
def join_inside(x: int) -> str:
    """The anti-pattern: waiting for a subtask's result inside a task."""
    try:
        add.delay(x, x).get(timeout=1)
    except RuntimeError as exc:
        return f"RuntimeError: {str(exc).strip().splitlines()[0]}"
    return "get() returned"


class HookedTask(Task):  # type: ignore[type-arg]
    """A custom Task base: every hook appends to the ledger of the task id."""

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        ledger.record(self.app, task_id, {"hook": "on_success", "retval": retval})

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        ledger.record(self.app, task_id, {"hook": "on_failure", "exc": repr(exc)})

    def on_retry(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        ledger.record(self.app, task_id, {"hook": "on_retry", "exc": repr(exc)})

    def after_return(self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        ledger.record(self.app, task_id, {"hook": "after_return", "status": status})


@shared_task(base=HookedTask, name="demos.canvas.hooked_ok")
def hooked_ok(x: int) -> int:
    return 2 * x


@shared_task(base=HookedTask, name="demos.canvas.hooked_fail")
def hooked_fail(x: int) -> int:
    raise KeyError(x)


@shared_task(bind=True, base=HookedTask, name="demos.canvas.hooked_retry", max_retries=1)
def hooked_retry(self: Any, x: int) -> int:
    if self.request.retries == 0:
        raise self.retry(exc=ConnectionError("flaky"), countdown=0)
    return x
