"""Configure functions that break one behaviour of the demo app each (used by tests/test_mutations.py).

Top-level functions of an importable module: worker processes (the prefork scenarios) rebuild the
app from them. Each applies the demos' configuration, then changes one thing.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery

from celery_sim.core.namespace import Namespace
from demos.config import configure as demo_configure


def _finalized(app: Celery, ns: Namespace) -> None:
    demo_configure(app, ns)
    app.finalize()


def _dropping(app: Celery, task: str, *options: str) -> None:
    """``task``'s apply_async ignores ``options`` (as if the caller had not given them)."""
    target: Any = app.tasks[task]
    original = target.apply_async

    def apply_async(args: Any = None, kwargs: Any = None, **given: Any) -> Any:
        for option in options:
            given.pop(option, None)
        return original(args, kwargs, **given)

    target.apply_async = apply_async


def body_in_another_thread(app: Celery, ns: Namespace) -> None:
    _finalized(app, ns)
    task: Any = app.tasks["demos.calling.whoami"]
    original = task.run

    def run(tag: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: out.update(original(tag)), name="mutation-thread")
        thread.start()
        thread.join(5)
        return out

    task.run = run


def apply_publishes(app: Celery, ns: Namespace) -> None:
    _finalized(app, ns)
    task: Any = app.tasks["demos.calling.whoami"]
    task.apply = task.apply_async


def queue_option_ignored(app: Celery, ns: Namespace) -> None:
    _finalized(app, ns)
    _dropping(app, "demos.calling.whoami", "queue")


def typo_registered(app: Celery, ns: Namespace) -> None:
    demo_configure(app, ns)

    def ad(x: int, y: int) -> int:
        return x + y

    app.task(name="demos.calling.ad", shared=False)(ad)


def send_task_runs_locally(app: Celery, ns: Namespace) -> None:
    _finalized(app, ns)
    target: Any = app

    def send_task(name: str, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        return app.tasks[name].apply(args, kwargs)

    target.send_task = send_task


def quick_tasks_routed_to_slow_queue(app: Celery, ns: Namespace) -> None:
    demo_configure(app, ns)
    routes = dict(app.conf.task_routes)
    routes["demos.routing.quick_task"] = routes["demos.routing.slow_report"]
    app.conf.task_routes = routes


def report_returns_at_once(app: Celery, ns: Namespace) -> None:
    _finalized(app, ns)
    task: Any = app.tasks["demos.timing.generate_report"]
    task.run = lambda seconds: "report ready"


def countdown_and_eta_ignored(app: Celery, ns: Namespace) -> None:
    _finalized(app, ns)
    _dropping(app, "demos.timing.stamp", "countdown", "eta")


def expires_ignored(app: Celery, ns: Namespace) -> None:
    _finalized(app, ns)
    _dropping(app, "demos.timing.sleep_for", "expires")


def no_task_routes(app: Celery, ns: Namespace) -> None:
    demo_configure(app, ns)
    app.conf.task_routes = {}


def autoretry_gives_up_after_two(app: Celery, ns: Namespace) -> None:
    """max_retries=2 where Celery's autoretry reads it (the decorator's retry_kwargs are captured)."""
    _finalized(app, ns)
    task: Any = app.tasks["demos.retries.sync_inventory"]
    original = task.retry

    def retry(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **{**kwargs, "max_retries": 2})

    task.retry = retry


def doctor_name_registered(app: Celery, ns: Namespace) -> None:
    demo_configure(app, ns)

    def no_such_task() -> str:
        return "exists after all"

    app.task(name="demos.doctor.no_such_task", shared=False)(no_such_task)


def doctor_reserved_empty(monkeypatch: Any) -> None:
    from celery_sim.tools import doctor

    real = doctor._Ask.__call__

    def ask(self: Any, command: str, **arguments: Any) -> dict[str, Any]:
        return {} if command == "reserved" else real(self, command, **arguments)

    monkeypatch.setattr(doctor._Ask, "__call__", ask)


def no_task_started_event(monkeypatch: Any) -> None:
    from celery.worker.request import Request

    real = Request.send_event

    def send_event(self: Any, type: str, **fields: Any) -> None:  # noqa: A002  # Celery's name
        if type != "task-started":
            real(self, type, **fields)

    monkeypatch.setattr(Request, "send_event", send_event)


# -- the guides' demo apps (their own Celery apps, patched in place for one test) ------------------


def rate_limit_not_applied(mp: Any) -> None:
    """The rate_limit command sets the task's rate_limit, but the consumer's token buckets stay as they were."""
    from celery.worker.consumer import Consumer

    mp.setattr(Consumer, "reset_rate_limits", lambda self: None)


def sending_hello_to_web_queue(mp: Any) -> None:
    from demos.sending.celery_app import HELLO, app

    mp.setitem(app.conf.task_routes, HELLO, {"queue": "web_queue"})


def sending_without_validation(mp: Any) -> None:
    import demos.sending.tasks

    mp.setattr(demos.sending.tasks, "validate", lambda params: params)


def async_native_made_sync(mp: Any) -> None:
    from demos.async_tasks.celery_app import app

    mp.setattr(app.tasks["demos.async_tasks.native"], "run", lambda marker: "done")


def async_loop_per_task(mp: Any) -> None:
    """Each task makes a loop of its own (as ``asyncio.run`` does); kept alive so ids stay distinct."""
    import asyncio

    import demos.async_tasks.tasks

    made: list[asyncio.AbstractEventLoop] = []

    def run(coro: Any) -> tuple[Any, int]:
        loop = asyncio.new_event_loop()
        made.append(loop)
        try:
            return loop.run_until_complete(coro), id(loop)
        finally:
            loop.close()

    mp.setattr(demos.async_tasks.tasks, "run", run)


def ai_runner_not_idempotent(mp: Any) -> None:
    import demos.ai_runner.tasks

    mp.setattr(demos.ai_runner.tasks, "already_done", lambda row: False)


def learning_add_subtracts(mp: Any) -> None:
    import demos.learning.tasks  # noqa: F401  # registers the tasks
    from demos.learning.celery_app import app

    mp.setattr(app.tasks["learning.add"], "run", lambda x, y: x - y)


def learning_progress_silent(mp: Any) -> None:
    import demos.learning.tasks  # noqa: F401  # registers the tasks
    from demos.learning.celery_app import app

    mp.setattr(
        app.tasks["learning.long_task"], "run", lambda steps=4: {"current": steps, "total": steps, "status": "done"}
    )


def learning_no_backoff(mp: Any) -> None:
    """The backoff does not grow (Celery 5.7 reads ``retry_backoff`` when the task is made, so the
    interval function autoretry calls is replaced instead)."""
    import celery.app.autoretry

    mp.setattr(celery.app.autoretry, "get_exponential_backoff_interval", lambda **kwargs: 1)


def learning_email_without_retries(mp: Any) -> None:
    import demos.learning.tasks  # noqa: F401  # registers the tasks
    from demos.learning.celery_app import app

    mp.setattr(app.tasks["learning.send_email"], "max_retries", 0)


def learning_report_at_three(mp: Any) -> None:
    import demos.learning.celery_app

    mp.setattr(demos.learning.celery_app, "DAILY_HOUR", 3)
