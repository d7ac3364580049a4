"""Why is a task not done? Answers from the timeline, the workers and the broker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery.backends.base import DisabledBackend
from celery.result import AsyncResult

from celery_sim.observe.timeline import Event

if TYPE_CHECKING:
    from celery_sim.core.harness import Harness

__all__ = ["diagnose_pending", "diagnose_result", "diagnose_task", "members", "stale_state"]


def members(result: Any) -> list[Any]:
    """``result`` and every result it waits on: a group's members, a chain's or chord's parents."""
    found: list[Any] = []
    stack = [result]
    seen: set[str] = set()
    while stack:
        current = stack.pop()
        if current is None or current.id in seen:
            continue
        seen.add(current.id)
        found.append(current)
        stack.extend(getattr(current, "results", None) or [])
        stack.append(getattr(current, "parent", None))
    return found


def diagnose_result(harness: Harness, result: Any) -> str:
    """Why ``result`` (a task's, a group's, a chain's or a chord's) is not ready, named by its members.

    A group is pending on the members that are; a chain step or a chord callback is not published
    until what it waits on has finished, so it is diagnosed by that (the previous step, or the
    header results still missing).
    """
    children = getattr(result, "results", None)
    if children is not None:  # a group
        waiting = [child for child in children if not child.ready()]
        if not waiting:
            return f"every member of group {result.id} is ready, but the caller did not get the group's result"
        texts = [diagnose_result(harness, child) for child in waiting]
        return f"group {result.id}: {len(waiting)} of {len(children)} member(s) not ready: " + "; ".join(texts)
    if harness.timeline.first(result.id, "published") is not None:
        return diagnose_task(harness, result.id)
    parent = getattr(result, "parent", None)
    if parent is None:
        return diagnose_task(harness, result.id)
    header = getattr(parent, "results", None)
    if header is not None:
        done = sum(1 for child in header if child.ready())
        return (
            f"the chord callback {result.id} is not published yet: it waits for {len(header) - done} of "
            f"{len(header)} header result(s); " + diagnose_result(harness, parent)
        )
    return f"chain step {result.id} is not published yet: it waits for the step before it; " + diagnose_result(
        harness, parent
    )


def diagnose_task(harness: Harness, task_id: str) -> str:
    """One sentence saying where ``task_id`` is stuck and what would unstick it."""
    app = harness.app
    timeline = harness.timeline
    if isinstance(app.backend, DisabledBackend):
        return (
            "result backend disabled: the app has no result_backend, so get() can never see a result; "
            "configure result_backend (or do not wait for results)"
        )
    events = timeline.events(task_id)
    published = next((e for e in events if e.kind == "published"), None)
    if published is None:
        return f"task {task_id} was never published by this run: wrong id, or sent through another app"
    name = published.name
    queue = str(published.data.get("queue") or "")
    logical = harness.ns.logical(queue)
    kinds = [e.kind for e in events]
    last = events[-1]
    if "unknown" in kinds:
        return (
            f"unregistered task: worker {last.hostname} received {name!r} but has no task by that name and "
            "discarded the message; import the task's module in the worker (include=...) or fix the name"
        )
    stale = stale_state(harness, task_id, events)
    if stale:
        return stale
    if "rejected" in kinds:
        return f"worker {last.hostname} rejected the message of {name!r}: {last.data.get('reason')}"
    if "received" not in kinds:
        consumers = harness.consumers_of(queue)
        waiting_text = str(harness.queue_size(queue))
        if not consumers:
            return (
                f"no worker consumes queue {logical!r}: {name!r} was routed there and waits "
                f"({waiting_text} message(s) in the queue); start a worker with -Q {logical} or change the route"
            )
        return (
            f"queue {logical!r} is consumed by {', '.join(consumers)} but {name!r} has not been taken yet "
            f"({waiting_text} waiting): every worker is busy or its prefetch window is full"
        )
    if last.kind == "received":
        eta = last.data.get("eta")
        if eta:
            return f"worker {last.hostname} holds {name!r} until its ETA {eta}"
        running = [f"{e.name!r} {e.task_id}" for e in timeline.running_on(last.hostname)]
        busy = f" (running: {', '.join(running)})" if running else ""
        return (
            f"worker {last.hostname} received {name!r} but has not started it: all pool slots busy{busy}, "
            "or rate-limited"
        )
    if last.kind in ("started", "progress"):
        started = next(e for e in events if e.kind == "started")
        running_for = timeline.now() - started.at
        return f"{name!r} is still running on {last.hostname} ({running_for:.2f}s so far): it takes longer than the wait allowed"
    if last.kind == "retried":
        return f"{name!r} raised and scheduled a retry ({last.data.get('reason')}); the retry has not run yet"
    if last.kind == "published":
        return f"{name!r} was re-published (retry or ETA) to {logical!r} and not yet taken"
    return f"{name!r} ended ({last.kind}) on {last.hostname}, but the caller did not get its result from the backend"


def stale_state(harness: Harness, task_id: str, events: list[Event]) -> str | None:
    """Why a task the worker ended still reads as not ready in the result backend, if it does."""
    ended = next((e for e in reversed(events) if e.kind in ("succeeded", "failed")), None)
    if ended is None:
        return None
    try:
        state = AsyncResult(task_id, app=harness.app).state
    except Exception:  # the backend is unreachable: nothing to say from here
        return None
    if state != "RETRY":  # (PENDING may only mean the task was sent through another harness's app)
        return None
    return (
        f"{ended.name!r} {ended.kind} on {ended.hostname}, but the result backend says {state}: a write of an "
        "earlier attempt (its RETRY) landed after the final one, so get() waits for ever (a Celery race with "
        "more than one pool slot and a short retry countdown, frequent with a slow result backend)"
    )


def diagnose_pending(harness: Harness, since: int) -> str | None:
    """Diagnoses of every task published since timeline mark ``since`` that is not done, or None.

    Not done: not ended on a worker, or ended there while the result backend says otherwise.
    """
    timeline = harness.timeline
    last = timeline.last_kinds(since)
    found = [diagnose_task(harness, task_id) for task_id, kind in last.items() if kind == "published"]
    found += [
        text
        for task_id, kind in last.items()
        if kind != "published" and (text := stale_state(harness, task_id, timeline.events(task_id)))
    ]
    return "; ".join(found) or None
