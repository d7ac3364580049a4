"""``call``: one task of the user's app, sent on a harness and followed to its end (or its diagnosis)."""

from __future__ import annotations

import difflib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from time import monotonic
from typing import Any

from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout

from celery_sim.core.adopt import load_app
from celery_sim.core.harness import Harness
from celery_sim.errors import HarnessError, UsageError
from celery_sim.observe.timeline import Event

__all__ = ["CallOutcome", "call_task", "follow", "import_app", "parse_json_option", "resolve_task_name"]


def parse_json_option(option: str, text: str | None, kind: type) -> Any:
    """``text`` parsed as JSON of ``kind`` (list or dict); a UsageError naming ``option`` otherwise."""
    if text is None:
        return kind()
    example = f"e.g. {option} " + ("'[2, 3]'" if kind is list else "'{\"x\": 1}'")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{option} {text!r} is not JSON ({exc.msg} at character {exc.pos}); {example}") from exc
    if not isinstance(value, kind):
        shape = "array" if kind is list else "object"
        raise UsageError(f"{option} must be a JSON {shape}, {example}; got {type(value).__name__} {text!r}")
    return value


def import_app(path: str) -> Celery:
    """The app at ``module:attr``, imported as ``celery -A`` does (the current directory first on the path)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        app = load_app(path)
    except HarnessError as exc:
        raise UsageError(f"--app {exc}".replace("--app app=", "--app ")) from exc
    app.loader.import_default_modules()  # the modules of `include=` / `imports`, as a worker imports them
    return app


def resolve_task_name(app: Celery, name: str) -> str:
    """``name`` if the app has that task, else a UsageError with the closest names."""
    app.finalize(auto=True)
    if name in app.tasks:
        return name
    own = sorted(n for n in app.tasks if not n.startswith("celery."))
    close = difflib.get_close_matches(name, own, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else f"its tasks: {', '.join(own) or 'none'}"
    raise UsageError(f"app {app.main!r} has no task {name!r}; {hint}")


@dataclass
class CallOutcome:
    """What became of one call: its result or error, its events, and the diagnosis if it did not end."""

    task_id: str
    name: str
    state: str
    result: Any = None
    error: str | None = None
    diagnosis: str | None = None
    events: list[Event] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.state == "SUCCESS"


def call_task(
    harness: Harness,
    name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    *,
    queue: str | None = None,
    wait: float = 10.0,
) -> CallOutcome:
    """Send task ``name`` through the harness's app and wait up to ``wait`` seconds for its end."""
    options: dict[str, Any] = {}
    if queue:
        options["queue"] = harness.queue(queue)
        if options["queue"] not in harness.main_queues:  # the queue chosen is where it runs
            harness.start_worker([queue], name="call", concurrency=1)
    started = monotonic()
    result = harness.app.tasks[name].apply_async(tuple(args), kwargs, **options)
    return follow(result, name, wait, started, harness.diagnose, harness.timeline.events)


def follow(
    result: Any,
    name: str,
    wait: float,
    started: float,
    diagnose: Callable[[Any], str],
    events: Callable[[], list[Event]] = list,
) -> CallOutcome:
    """Wait up to ``wait`` seconds for ``result``'s end: its value, its error, or ``diagnose(result)``."""
    outcome = CallOutcome(result.id, name, "PENDING")
    try:
        outcome.result = result.get(timeout=wait, propagate=True)
        outcome.state = "SUCCESS"
    except CeleryTimeout:
        outcome.state = str(result.state)
        outcome.diagnosis = diagnose(result)
    except Exception as exc:  # the task's own error, rebuilt by Celery
        outcome.state = str(result.state)
        outcome.error = f"{type(exc).__name__}: {exc}"
    outcome.duration_s = monotonic() - started
    outcome.events = events()
    return outcome
