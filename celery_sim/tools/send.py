"""``send``: the sending guide's ``send_task.py``: a task of ``demos.sending`` sent by name.

On a harness (embedded broker, or a real one with the harness's worker) the outcome is followed
as ``call`` follows it; with ``external=True`` the message goes to the app's own queues on a real
broker, where the user's ``celery -A demos.sending worker -Q ...`` consumes it, and a task that
does not end in time gets the doctor's diagnosis of that deployment.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from time import monotonic
from typing import Any

from celery import Celery

from celery_sim.core.harness import Harness
from celery_sim.errors import UsageError
from celery_sim.tools.call import CallOutcome, follow

__all__ = ["SHORTCUTS", "Sending", "prepare", "send_external", "send_on_harness"]

#: The guide's Makefile targets: shortcut -> task name.
SHORTCUTS = {
    "hello": "tasks.secretflow.hello.hello_task",
    "health": "tasks.secretflow.health_check",
    "psi": "tasks.secretflow.execute_task",
}
APP_PATH = "demos.sending.celery_app:app"


@dataclass
class Sending:
    """What to send: the task's name and arguments (``psi`` without ``--args``: the guide's example job)."""

    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    example: bool = False


def prepare(what: str, args: list[Any], kwargs: dict[str, Any]) -> Sending:
    """The message for ``what`` (a shortcut or a task name); the PSI params are checked here first,
    so that a bad field is a usage error naming it, before anything is sent."""
    from demos.sending.params import InvalidParams, validate

    name = SHORTCUTS.get(what, what)
    if name != SHORTCUTS["psi"]:
        return Sending(name, args, kwargs)
    if not args and not kwargs:
        return Sending(name, [f"job-{uuid.uuid4().hex[:8]}"], {}, example=True)
    given = kwargs.get("params", args[1] if len(args) > 1 else None)
    if len(args) + len(kwargs) != 2 or given is None:
        raise UsageError(
            "psi takes two arguments, the job's id and its params: "
            '--args \'["job-1", {"parties": ["alice", "bob"], ...}]\' (or no --args for the guide\'s example)'
        )
    try:
        validate(given)
    except InvalidParams as exc:
        raise UsageError(f"--args: {exc}") from exc
    return Sending(name, args, kwargs)


@contextmanager
def _example(sending: Sending) -> Iterator[Sending]:
    """``sending`` with the guide's example params, their input files in a temporary folder."""
    if not sending.example:
        yield sending
        return
    from demos.sending.params import example_params

    with tempfile.TemporaryDirectory(prefix="csim-psi-") as folder:
        yield Sending(sending.name, [sending.args[0], example_params(Path(folder))], {})


def send_on_harness(harness: Harness, sending: Sending, *, queue: str | None, wait: float) -> CallOutcome:
    """``send_task`` by name on ``harness`` (its worker consumes the app's queues), followed to its end."""
    options: dict[str, Any] = {"queue": harness.queue(queue)} if queue else {}
    with _example(sending) as message:
        started = monotonic()
        result = harness.app.send_task(message.name, message.args, message.kwargs, **options)
        return follow(result, message.name, wait, started, harness.diagnose, harness.timeline.events)


def send_external(
    broker_url: str, result_backend: str, sending: Sending, *, queue: str | None, wait: float
) -> CallOutcome:
    """``send_task`` by name to the app's own queues on a real broker; a worker elsewhere runs it.

    The result is read, then forgotten, so that nothing of this call stays on the broker.
    """
    from demos.sending.celery_app import app as guide_app

    app = Celery("sending-client", set_as_current=False)
    app.conf.update({**dict(guide_app.conf.changes or {}), "broker_url": broker_url, "result_backend": result_backend})
    try:
        with _example(sending) as message:
            started = monotonic()
            options: dict[str, Any] = {"queue": queue} if queue else {}
            result = app.send_task(message.name, message.args, message.kwargs, **options)
            outcome = follow(result, message.name, wait, started, lambda r: _diagnose(app, r, message.name, queue))
            if outcome.state in ("SUCCESS", "FAILURE"):
                result.forget()
            return outcome
    finally:
        app.close()


def _diagnose(app: Celery, result: Any, name: str, queue: str | None) -> str:
    """Why ``result`` did not end: the queue it was sent to has no consumer, or the doctor's finding."""
    from celery_sim.tools.doctor import examine

    said = _unconsumed(app, queue) if queue else None
    if said is not None:
        return said
    finding = examine(app, result.id, name)
    return f"{finding.cause}. {finding.fix}".strip(". ") + "; " + "; ".join(finding.evidence)


def _unconsumed(app: Celery, queue: str) -> str | None:
    """If no live worker consumes ``queue``: that diagnosis; the queue is deleted when this call's
    message is all it holds (nothing of the call stays on the broker). None if a worker consumes it."""
    from celery_sim.core.admin import message_count
    from celery_sim.core.adopt import delete_queues
    from celery_sim.tools.doctor import json_control

    replies = json_control(app).inspect(timeout=1.0).active_queues() or {}
    if any(q.get("name") == queue for queues in replies.values() for q in queues or []):
        return None
    waiting = message_count(app, queue)
    said = f"no worker consumes queue {queue!r} ({waiting or 0} message(s) waiting; live workers: {', '.join(sorted(replies)) or 'none'})"
    if waiting == 1:
        delete_queues(app, [app.amqp.queues[queue]])  # as Celery declared it for the send
        said += "; the queue held only this message and was deleted"
    return said + f"; start a worker with -Q {queue}, or send without --queue (the task's own route)"
