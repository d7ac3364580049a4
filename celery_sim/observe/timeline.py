"""What happened to each task, in order: the contract between running scenarios and reporting."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from time import monotonic
from typing import Any, Literal

__all__ = [
    "ATTEMPT_END_KINDS",
    "FAILED_END_KINDS",
    "KINDS",
    "MAX_EVENTS",
    "TASK_END_KINDS",
    "Event",
    "EventKind",
    "Timeline",
]

EventKind = Literal[
    "published", "received", "started", "progress", "retried", "succeeded", "failed", "revoked", "unknown", "rejected"
]
KINDS: tuple[EventKind, ...] = (
    "published",
    "received",
    "started",
    "progress",
    "retried",
    "succeeded",
    "failed",
    "revoked",
    "unknown",
    "rejected",
)
#: Kinds after which a task will do nothing more (a retry is followed by a new publish).
TASK_END_KINDS: frozenset[str] = frozenset({"succeeded", "failed", "revoked", "unknown", "rejected"})
#: Kinds that end one attempt of a task: the task's end, or a retry.
ATTEMPT_END_KINDS: frozenset[str] = TASK_END_KINDS | {"retried"}
#: Kinds that end a task without success.
FAILED_END_KINDS: frozenset[str] = TASK_END_KINDS - {"succeeded"}


@dataclass(frozen=True)
class Event:
    """One thing that happened to one task, ``at`` seconds after the timeline started."""

    kind: EventKind
    task_id: str
    name: str
    at: float
    hostname: str | None = None
    thread: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


#: Events a timeline keeps at most (about 20,000 tasks): beyond it, the oldest events of tasks
#: that have ended are let go, so a long run's memory stays bounded.
MAX_EVENTS = 100_000


class Timeline:
    """A thread-safe list of :class:`Event` in recording order, with waiting and live subscribers.

    Bounded: past ``max_events``, the oldest quarter's events of tasks that have ended are
    dropped (counted in :attr:`dropped`); events of unfinished tasks always stay. Positions from
    :meth:`mark` are sequence numbers, so they stay exact across a drop.
    """

    def __init__(self, clock: Callable[[], float] = monotonic, *, max_events: int = MAX_EVENTS) -> None:
        self._clock = clock
        self._t0 = clock()
        self._events: list[Event] = []
        #: The sequence number of each event in ``_events`` (increasing; gaps where events were dropped).
        self._seq: list[int] = []
        self._next = 0
        self.max_events = max_events
        #: How many events were let go to keep within ``max_events``.
        self.dropped = 0
        self._cond = threading.Condition(threading.RLock())  # reentrant: _compact reads last_kinds()
        self._subscribers: list[Callable[[Event], None]] = []

    def now(self) -> float:
        """Seconds since the timeline started, on the timeline's clock."""
        return self._clock() - self._t0

    def record(
        self, kind: EventKind, task_id: str, name: str, hostname: str | None = None, *, ago: float = 0.0, **data: Any
    ) -> Event:
        """Append an event that happened ``ago`` seconds before now.

        Events stay in the order they were recorded (positions from :meth:`mark` stay valid);
        ``at`` says when each happened, so compare ``at`` to order events from other processes.
        """
        event = Event(kind, task_id, name, self.now() - ago, hostname, threading.current_thread().name, data)
        with self._cond:
            self._events.append(event)
            self._seq.append(self._next)
            self._next += 1
            if len(self._events) > self.max_events:
                self._compact()
            subscribers = list(self._subscribers)
            self._cond.notify_all()
        for subscriber in subscribers:
            subscriber(event)
        return event

    def _compact(self) -> None:
        """Drop the events of ended tasks from the oldest quarter (called with the lock held,
        which is reentrant)."""
        ended = {task_id for task_id, kind in self.last_kinds().items() if kind in TASK_END_KINDS}
        quarter = max(1, len(self._events) // 4)
        keep = [i for i in range(quarter) if self._events[i].task_id not in ended]
        self.dropped += quarter - len(keep)
        self._events = [self._events[i] for i in keep] + self._events[quarter:]
        self._seq = [self._seq[i] for i in keep] + self._seq[quarter:]

    def mark(self) -> int:
        """A position: pass it as ``since`` to see only what happens after now."""
        with self._cond:
            return self._next

    def events(self, task_id: str | None = None, kinds: Iterable[str] | None = None, since: int = 0) -> list[Event]:
        wanted = None if kinds is None else frozenset(kinds)
        with self._cond:
            selected = self._events[bisect_left(self._seq, since) :]
        # In the order they happened: a worker process's events arrive out of order (its pool
        # processes send over their own connections; Celery buffers the parent's task events).
        return sorted(
            (e for e in selected if (task_id is None or e.task_id == task_id) and (wanted is None or e.kind in wanted)),
            key=lambda e: e.at,
        )

    def kinds(self, task_id: str) -> list[str]:
        """The kinds of ``task_id``'s events, in order."""
        return [e.kind for e in self.events(task_id)]

    def first(self, task_id: str, kind: str) -> Event | None:
        found = self.events(task_id, [kind])
        return found[0] if found else None

    def attempts(self, task_id: str) -> list[int]:
        """``request.retries`` of each attempt of ``task_id`` that started, in order (0, 1, 2, ...)."""
        return [int(e.data.get("retries") or 0) for e in self.events(task_id, ["started"])]

    def countdowns(self, task_id: str) -> list[float | None]:
        """The delay Celery scheduled for each retry of ``task_id``, in seconds, from the retry messages.

        Read from the ETA Celery computed (before any time compression); None for a retry sent
        without a delay.
        """
        return [
            e.data.get("countdown") for e in self.events(task_id, ["published"]) if int(e.data.get("retries") or 0) > 0
        ]

    def span(self, task_id: str) -> tuple[float, float] | None:
        """When ``task_id`` ran: from its first start to its last end (None if it has not ended)."""
        events = self.events(task_id)
        starts = [e.at for e in events if e.kind == "started"]
        ends = [e.at for e in events if e.kind in ATTEMPT_END_KINDS]
        if not starts or not ends:
            return None
        return starts[0], ends[-1]

    def last_kinds(self, since: int = 0) -> dict[str, str]:
        """Each task seen from ``since`` on -> the kind of its last publish or end (in first-seen
        order): ``published`` means not finished, a kind of :data:`TASK_END_KINDS` finished.

        "Last" is by when each happened (``at``), not by when it was recorded: a worker process
        reports a retry it published and the retry's end on separate connections, which may
        arrive in either order.
        """
        last: dict[str, tuple[float, str]] = {}
        for event in self.events(since=since):
            if event.kind == "published" or event.kind in TASK_END_KINDS:
                seen = last.get(event.task_id)
                if seen is None or event.at >= seen[0]:
                    last[event.task_id] = (event.at, event.kind)
        return {task_id: kind for task_id, (_, kind) in last.items()}

    def running_on(self, hostname: str | None) -> list[Event]:
        """The ``started`` event of each attempt on ``hostname`` that has not ended."""
        running: dict[str, Event] = {}
        for event in self.events():
            if event.hostname != hostname:
                continue
            if event.kind == "started":
                running[event.task_id] = event
            elif event.kind in ATTEMPT_END_KINDS:
                running.pop(event.task_id, None)
        return list(running.values())

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float, since: int = 0) -> Event | None:
        """The first event from ``since`` on matching ``predicate``, waiting up to ``timeout`` seconds."""
        deadline = monotonic() + timeout
        position = since
        with self._cond:
            while True:
                for event in self._events[bisect_left(self._seq, position) :]:
                    if predicate(event):
                        return event
                position = self._next
                remaining = deadline - monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback`` with every new event (from the recording thread); returns an unsubscriber."""
        with self._cond:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._cond:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe
