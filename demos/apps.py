"""Runs a demo app of its own (``demos.<app>``) inside a catalog run: a side harness lends it the run's broker."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery_sim.core.harness import Harness
from celery_sim.scenarios.scenario import Context

__all__ = ["LANE", "app_harness"]

#: The demo apps' scenarios run one after another in a lane of their own, beside the catalog's
#: other lanes (see :class:`~celery_sim.scenarios.runner.Runner`): each builds a harness of its
#: app and mostly waits on it, and none has a timing check that other work can shorten.
LANE = "demo"

#: Lasting app harnesses: run harness -> app path -> the app's harness (stopped with the run).
_LASTING: weakref.WeakKeyDictionary[Harness, dict[str, Harness]] = weakref.WeakKeyDictionary()


@contextmanager
def app_harness(ctx: Context, app_path: str, *, lasting: bool = False, **overrides: Any) -> Iterator[Harness]:
    """A harness of this run for the app at ``app_path`` (``module:attr``, as ``celery -A`` takes).

    Its main worker consumes every queue the app routes to (a real ``celery worker`` process when
    the run's workers are processes); it records into the run's timeline. It is stopped when the
    block ends (an app is lent to one harness at a time), unless ``lasting``: then the scenarios
    of one app that change nothing of its workers share it for the rest of the run (each start
    and stop costs a worker process, or up to 2 s of Celery's blocking loop on Redis).
    """
    if lasting and not overrides:
        found = _LASTING.setdefault(ctx.harness, {}).get(app_path)
        if found is None or not found.running:
            found = _LASTING[ctx.harness][app_path] = _start(ctx, app_path)
        yield found
        return
    harness = _start(ctx, app_path, **overrides)
    try:
        yield harness
    finally:
        harness.stop()


def _start(ctx: Context, app_path: str, **overrides: Any) -> Harness:
    settings: dict[str, Any] = {"app": app_path, "queues": None, "configure": None, "extra_conf": {}, "unconsumed": ()}
    return ctx.side(**{**settings, **overrides})
