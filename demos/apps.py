"""Runs a demo app of its own (``demos.<app>``) inside a catalog run: a side harness lends it the run's broker."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery_sim.core.harness import Harness
from celery_sim.scenarios.scenario import Context

__all__ = ["app_harness"]


@contextmanager
def app_harness(ctx: Context, app_path: str, **overrides: Any) -> Iterator[Harness]:
    """A harness of this run for the app at ``app_path`` (``module:attr``, as ``celery -A`` takes),
    stopped when the block ends (an app is lent to one harness at a time).

    Its main worker consumes every queue the app routes to (a real ``celery worker`` process when
    the run's workers are processes); it records into the run's timeline.
    """
    settings: dict[str, Any] = {"app": app_path, "queues": None, "configure": None, "extra_conf": {}, "unconsumed": ()}
    harness = ctx.side(**{**settings, **overrides})
    try:
        yield harness
    finally:
        harness.stop()
