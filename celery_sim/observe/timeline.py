"""What happened to each task, in order: the contract between running scenarios and reporting."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from time import monotonic
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

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


class Event(NamedTuple):
    """One thing that happened to one task, ``at`` seconds after the timeline started.

    A named tuple rather than a frozen dataclass: as immutable, and a third of the cost to make
    (0.6 against 2.2 µs), which every task pays four times or more.
    """

    kind: EventKind
    task_id: str
    name: str
    at: float
    hostname: str | None = None
    thread: str = ""
    data: Mapping[str, Any] = MappingProxyType({})


#: An event as the timeline stores it: :class:`Event`'s fields but its data, then its data's keys
#: (one tuple, shared by every event a recorder makes of one kind), then its data's values.
_Row = tuple[Any, ...]
_KIND, _TASK_ID, _NAME, _AT, _HOSTNAME, _THREAD, _KEYS = range(7)

#: Events a timeline keeps at most (about 20,000 tasks): beyond it, the oldest events of tasks
#: that have ended are let go, so a long run's memory stays bounded.
MAX_EVENTS = 100_000


class Timeline:
    """A thread-safe list of :class:`Event` in recording order, with waiting and live subscribers.

    Bounded: past ``max_events``, the oldest events of tasks that have ended, a quarter of the
    list at most, are dropped (counted in :attr:`dropped`); events of unfinished tasks always
    stay. When they alone fill it (many tasks published and none done yet), the next compaction
    waits until the list has grown by a quarter again, so recording stays O(1) amortized.
    Positions from :meth:`mark` are sequence numbers, so they stay exact across a drop; what
    :meth:`remember` names outlives a drop too.
    """

    def __init__(self, clock: Callable[[], float] = monotonic, *, max_events: int = MAX_EVENTS) -> None:
        self._clock = clock
        self._t0 = clock()
        #: Each event as one flat tuple (see ``_Row``; an :class:`Event` is made when read).
        #: Python's collector stops tracking a tuple of strings and numbers at its first look, so
        #: a long timeline adds nothing to each collection's work, as 100,000 objects would.
        self._events: list[_Row] = []
        #: The sequence number of each event in ``_events`` (increasing; gaps where events were dropped).
        self._seq: list[int] = []
        self._next = 0
        self.max_events = max_events
        #: The length past which the next compaction runs: ``max_events``, or more while the
        #: events of unfinished tasks alone exceed it.
        self._compact_past = max_events
        #: How many events were let go to keep within ``max_events``.
        self.dropped = 0
        self._cond = threading.Condition(threading.Lock())
        #: Threads in :meth:`wait_for`: a record with none skips the notification.
        self._waiting = 0
        self._subscribers: tuple[Callable[[Event], None], ...] = ()
        #: (kind, field) -> the values of ``field`` in dropped events of ``kind`` (see :meth:`remember`).
        self._remembered: dict[tuple[str, str], set[Any]] = {}

    def now(self) -> float:
        """Seconds since the timeline started, on the timeline's clock."""
        return self._clock() - self._t0

    def record(
        self, kind: EventKind, task_id: str, name: str, hostname: str | None = None, *, ago: float = 0.0, **data: Any
    ) -> None:
        """Append an event that happened ``ago`` seconds before now.

        Events stay in the order they were recorded (positions from :meth:`mark` stay valid);
        ``at`` says when each happened, so compare ``at`` to order events from other processes.
        """
        self.record_values(kind, task_id, name, hostname, tuple(data), tuple(data.values()), ago=ago)

    def record_values(
        self,
        kind: EventKind,
        task_id: str,
        name: str,
        hostname: str | None,
        keys: tuple[str, ...],
        values: tuple[Any, ...],
        *,
        ago: float = 0.0,
    ) -> None:
        """:meth:`record` with the event's data as its ``keys`` and their ``values``, in turn.

        What a recorder calls for every task: a constant ``keys`` tuple and a tuple of values cost
        a tenth of building and unpacking a keyword dict (0.3 against 3.5 µs for 13 keys).
        """
        row = (kind, task_id, name, self.now() - ago, hostname, threading.current_thread().name, keys, *values)
        with self._cond:
            self._events.append(row)
            self._seq.append(self._next)
            self._next += 1
            if len(self._events) > self._compact_past:
                self._compact()
            subscribers = self._subscribers
            if self._waiting:
                self._cond.notify_all()
        if subscribers:
            event = _event(row)
            for subscriber in subscribers:
                subscriber(event)

    def _compact(self) -> None:
        """Let go of the oldest events of ended tasks, a quarter of the list's length at most
        (called with the lock held)."""
        ended = {task_id for task_id, kind in _last_kinds(self._events).items() if kind in TASK_END_KINDS}
        to_drop = max(1, len(self._events) // 4)
        events: list[_Row] = []
        seq: list[int] = []
        for event, number in zip(self._events, self._seq, strict=True):
            if to_drop and event[_TASK_ID] in ended:
                to_drop -= 1
                self.dropped += 1
                for (kind, name), kept in self._remembered.items():
                    if event[_KIND] == kind and (value := _field(event, name)) is not None:
                        kept.add(value)
            else:
                events.append(event)
                seq.append(number)
        self._events, self._seq = events, seq
        self._compact_past = max(self.max_events, len(events) + len(events) // 4)

    def _rows_since(self, since: int) -> list[_Row]:
        with self._cond:
            return self._events[bisect_left(self._seq, since) :]

    def remember(self, kind: str, field: str) -> None:
        """Keep, past compaction, every value :meth:`values` gives for ``kind`` and ``field``: what
        a run must still know at its end (the queues it published to, to delete them)."""
        with self._cond:
            self._remembered.setdefault((kind, field), set())

    def values(self, kind: str, field: str) -> set[Any]:
        """The values (None aside) of ``field`` (``task_id``, ``name``, ``hostname`` or a data key)
        in the events of ``kind``, without making an :class:`Event` of each; with those of dropped
        events when :meth:`remember` asked for them first."""
        with self._cond:
            found = set(self._remembered.get((kind, field), ()))
            rows = [row for row in self._events if row[_KIND] == kind]
        found.update(value for row in rows if (value := _field(row, field)) is not None)
        return found

    def mark(self) -> int:
        """A position: pass it as ``since`` to see only what happens after now."""
        with self._cond:
            return self._next

    def events(self, task_id: str | None = None, kinds: Iterable[str] | None = None, since: int = 0) -> list[Event]:
        wanted = None if kinds is None else frozenset(kinds)
        selected = self._rows_since(since)
        # In the order they happened: a worker process's events arrive out of order (its pool
        # processes send over their own connections; Celery buffers the parent's task events).
        return sorted(
            (
                _event(e)
                for e in selected
                if (task_id is None or e[_TASK_ID] == task_id) and (wanted is None or e[_KIND] in wanted)
            ),
            key=_at,
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
        return _last_kinds(self._rows_since(since))

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
                for row in self._events[bisect_left(self._seq, position) :]:
                    event = _event(row)
                    if predicate(event):
                        return event
                position = self._next
                remaining = deadline - monotonic()
                if remaining <= 0:
                    return None
                self._waiting += 1
                try:
                    self._cond.wait(remaining)
                finally:
                    self._waiting -= 1

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback`` with every new event (from the recording thread); returns an unsubscriber."""
        with self._cond:
            self._subscribers = (*self._subscribers, callback)

        def unsubscribe() -> None:
            with self._cond:
                self._subscribers = tuple(s for s in self._subscribers if s is not callback)

        return unsubscribe


def _last_kinds(rows: Iterable[_Row]) -> dict[str, str]:
    """:meth:`Timeline.last_kinds` of ``rows`` (in the order each task is first seen in them)."""
    last: dict[str, tuple[float, str]] = {}
    for row in rows:
        kind, task_id, at = row[0], row[1], row[3]
        if kind == "published" or kind in TASK_END_KINDS:
            seen = last.get(task_id)
            if seen is None or at >= seen[0]:
                last[task_id] = (at, kind)
    return {task_id: kind for task_id, (_, kind) in last.items()}


_FIELDS = {"task_id": _TASK_ID, "name": _NAME, "hostname": _HOSTNAME, "thread": _THREAD}


def _field(row: _Row, name: str) -> Any:
    """The value of an :class:`Event` field or data key ``name`` in ``row`` (None when it has none)."""
    if name in _FIELDS:
        return row[_FIELDS[name]]
    keys: tuple[str, ...] = row[_KEYS]
    return row[_KEYS + 1 + keys.index(name)] if name in keys else None


def _event(row: _Row) -> Event:
    data = dict(zip(row[_KEYS], row[_KEYS + 1 :], strict=True))
    return Event(row[_KIND], row[_TASK_ID], row[_NAME], row[_AT], row[_HOSTNAME], row[_THREAD], data)


def _at(event: Event) -> float:
    return event.at
