"""Scenarios: named functions that drive a harness and record checks (expected vs observed)."""

from __future__ import annotations

import difflib
import enum
import threading
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from time import monotonic
from typing import TYPE_CHECKING, Any, TypeVar

from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult
from celery.states import READY_STATES

from celery_sim.core.brokers import mask_url
from celery_sim.errors import CelerySimError, UnknownScenarioError
from celery_sim.observe.timeline import TASK_END_KINDS

if TYPE_CHECKING:
    from celery_sim.core.harness import Harness, Worker
    from celery_sim.observe.timeline import Event, Timeline

T = TypeVar("T")

__all__ = [
    "REGISTRY",
    "Check",
    "Context",
    "Registry",
    "Scenario",
    "ScenarioResult",
    "SkipScenario",
    "Status",
    "StoredStateRace",
    "WaitTimeout",
    "scenario",
]


class Status(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"
    ERROR = "error"


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: containers kept, anything else by ``repr``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((jsonable(v) for v in value), key=repr)
    if isinstance(value, type):
        return value.__name__
    return repr(value)


@dataclass(frozen=True)
class Check:
    """One verified statement: what was expected, what was observed, and whether they agree."""

    name: str
    passed: bool
    expected: Any
    observed: Any
    #: A check that cannot apply here (its reason is the observed value): shown, never failed.
    skipped: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "expected": jsonable(self.expected),
            "observed": jsonable(self.observed),
            "skipped": self.skipped,
        }


@dataclass
class ScenarioResult:
    name: str
    summary: str
    status: Status
    duration_s: float
    checks: list[Check] = field(default_factory=list)
    diagnosis: str | None = None
    events: list[Event] = field(default_factory=list)
    #: Caveats the user must see even when every check passed (what a pool or broker cannot do).
    warnings: list[str] = field(default_factory=list)
    #: What this broker does differently, as the scenario declares it (its checks expect that).
    difference: str | None = None

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "status": self.status.value,
            "duration_s": round(self.duration_s, 4),
            "checks": [c.to_json() for c in self.checks],
            "diagnosis": mask_url(self.diagnosis) if self.diagnosis else None,
            "warnings": [mask_url(w) for w in self.warnings],
            "difference": self.difference,
        }


class SkipScenario(CelerySimError):
    """Raised by a scenario that cannot run here; the reason is shown to the user."""


class StoredStateRace(CelerySimError):
    """A task ended on its worker, but an earlier attempt's late write replaced its stored state."""

    def __init__(self, diagnosis: str, task_id: str, state: str) -> None:
        super().__init__(diagnosis)
        self.task_id = task_id
        self.state = state


class WaitTimeout(CelerySimError):
    """A bounded wait ended before the task did; ``diagnosis`` says why it was stuck."""

    def __init__(self, diagnosis: str) -> None:
        super().__init__(diagnosis)
        self.diagnosis = diagnosis


@dataclass(frozen=True)
class Guarded:
    """The outcome of a guarded wait: a value, or the diagnosis of why there was none."""

    value: Any = None
    diagnosis: str | None = None
    waited_s: float = 0.0
    #: The task ended, but the result backend holds an earlier attempt's state (a Celery race).
    race: bool = False

    @property
    def timed_out(self) -> bool:
        return self.diagnosis is not None


#: How long one get() waits before the guard looks for a stored-state race.
_GET_SLICE_S = 0.5

#: Ends of an attempt that ran: each has a ``started`` before it.
RAN_KINDS = ("succeeded", "failed", "retried")


class Context:
    """What a scenario gets: the harness, its deadline, and the record of its checks."""

    def __init__(
        self,
        harness: Harness,
        scenario: Scenario,
        deadline: float,
        on_progress: Callable[[str, int, int], None] | None = None,
    ) -> None:
        self.harness = harness
        self.scenario = scenario
        self.deadline = deadline
        self.checks: list[Check] = []
        self.warnings: list[str] = []
        self.since = harness.timeline.mark()
        self._on_progress = on_progress
        self._workers: list[Worker] = []
        self._starting: list[threading.Thread] = []

    @property
    def app(self) -> Any:
        return self.harness.app

    @property
    def timeline(self) -> Timeline:
        return self.harness.timeline

    @property
    def broker(self) -> str:
        """The kind of broker this run uses: memory, fakeredis, redis or amqp."""
        return self.harness.broker.name

    def remaining(self) -> float:
        """Seconds left before this scenario's deadline (never negative)."""
        return max(0.0, self.deadline - monotonic())

    def queue(self, name: str) -> str:
        """This run's name for logical queue ``name`` (use it wherever Celery takes a queue name)."""
        return self.harness.queue(name)

    def check(self, name: str, expected: Any, observed: Any, *, passed: bool | None = None) -> bool:
        """Record a check; it passes when ``observed == expected`` unless ``passed`` says otherwise."""
        ok = (observed == expected) if passed is None else bool(passed)
        self.checks.append(Check(name, ok, expected, observed))
        return ok

    def skip_check(self, name: str, expected: Any, reason: str) -> None:
        """Record a check that cannot apply here, with the reason: visible, never silently absent."""
        self.checks.append(Check(name, True, expected, f"not checked: {reason}", skipped=True))

    def events(self, task_id: str | None = None, kinds: Iterable[str] | None = None) -> list[Event]:
        """Timeline events since this scenario started."""
        return self.timeline.events(task_id, kinds, since=self.since)

    def ran_on(self, task_id: str) -> str | None:
        """Node name of the worker that received ``task_id`` (None if no worker did)."""
        event = self.timeline.first(task_id, "received")
        return event.hostname if event else None

    def wait(self, result: AsyncResult[Any], timeout: float | None = None, propagate: bool = True) -> Any:
        """``result.get()`` bounded by ``timeout`` and the deadline; raises :class:`WaitTimeout` with a diagnosis."""
        guarded = self.guard(result, timeout, propagate=propagate)
        if guarded.race:
            raise StoredStateRace(guarded.diagnosis or "", result.id, result.state)
        if guarded.diagnosis is not None:
            raise WaitTimeout(guarded.diagnosis)
        return guarded.value

    def outcome(self, result: AsyncResult[Any]) -> tuple[str, Any]:
        """The final state and what ``get()`` gave the caller: the value, or the exception it raised.

        A wait that runs out of time is not an outcome: :class:`WaitTimeout` propagates, so that
        the runner reports it with its diagnosis.
        """
        try:
            return "SUCCESS", self.wait(result)
        except WaitTimeout:
            raise
        except StoredStateRace as exc:
            self.race_found(exc)
            return exc.state, exc
        except Exception as exc:
            return result.state, exc

    def race_found(self, race: StoredStateRace) -> None:
        """Record the race as the failed check it is (Celery's finding, not a timeout)."""
        self.check(
            f"the result backend keeps the final state of {race.task_id}",
            "the state of the attempt that ended last",
            f"{race.state}: {race}",
            passed=False,
        )

    def guard(self, result: AsyncResult[Any], timeout: float | None = None, propagate: bool = True) -> Guarded:
        """Like :meth:`wait`, but a timeout is returned as a diagnosis instead of raised."""
        from celery_sim.observe.diagnose import diagnose_result, stale_state

        limit = self.remaining() if timeout is None else min(timeout, self.remaining())
        started = monotonic()
        deadline = started + limit
        while True:
            try:
                # In slices: a task the worker ended whose stored state an earlier attempt's late
                # write replaced (Celery's RETRY-after-FAILURE race) would keep get() waiting to
                # the deadline; it is reported as what it is as soon as it is seen.
                value = result.get(
                    timeout=min(_GET_SLICE_S, max(0.0, deadline - monotonic())), propagate=propagate, interval=0.05
                )
                break
            except CeleryTimeoutError:
                race = stale_state(self.harness, result.id, self.timeline.events(result.id))
                if race is not None:
                    return Guarded(diagnosis=race, waited_s=monotonic() - started, race=True)
                if monotonic() >= deadline:
                    waited = monotonic() - started  # the wait, not the diagnosis after it
                    return Guarded(diagnosis=diagnose_result(self.harness, result), waited_s=waited)
            except BaseException:
                self._settle_all(result)
                raise
        self._settle_all(result)
        return Guarded(value=value, waited_s=monotonic() - started)

    def _settle_all(self, result: AsyncResult[Any]) -> None:
        """:meth:`_settle` the task of ``result`` and of every result it waited on (group members,
        the earlier steps of a chain, a chord's header): a worker process's events for them can
        arrive after the last one's."""
        from celery_sim.observe.diagnose import members

        for member in members(result):
            self._settle(member.id)

    def _settle(self, task_id: str) -> None:
        """Wait (bounded) until the timeline has ``task_id``'s final event.

        Celery stores a result before it sends task_success (or task_unknown), so a caller whose
        get() just returned may otherwise read the timeline before the worker has recorded it.
        """
        if self.timeline.first(task_id, "published") is None:
            return  # not a task sent by this run (a group id, an eager result)
        limit = min(1.0, self.remaining())
        self.timeline.wait_for(lambda e: e.task_id == task_id and e.kind in TASK_END_KINDS, timeout=limit)
        # A worker process's events come over several connections: a pool process sends its
        # csim-started over its own, opened on first use, so it can arrive after the task's end
        # (seen on RabbitMQ). Every attempt that ran and ended had a start.
        ran = len(self.timeline.events(task_id, RAN_KINDS))
        self.eventually(lambda: len(self.timeline.events(task_id, ["started"])), lambda n: n >= ran, timeout=limit)

    def eventually(self, probe: Callable[[], T], until: Callable[[T], bool], timeout: float | None = None) -> T:
        """Call ``probe`` until ``until(value)`` holds or time runs out; returns the last value.

        Re-checks whenever the timeline records an event, and at least every 10 ms (for state
        that changes without a task event, such as a chord callback marked failed).
        """
        deadline = monotonic() + (self.remaining() if timeout is None else min(timeout, self.remaining()))
        position = self.timeline.mark()
        while True:
            value = probe()
            if until(value) or monotonic() >= deadline:
                return value
            if self.timeline.wait_for(
                lambda e: True, timeout=min(0.01, max(0.0, deadline - monotonic())), since=position
            ):
                position = self.timeline.mark()

    def watch(self, result: AsyncResult[Any], on_change: Callable[[str, Any], None] | None = None) -> list[str]:
        """The states a caller polling ``result`` sees, until it is ready or the deadline passes.

        Reads ``result.state`` again on each timeline event of the task (or every 5 ms, as a
        polling client would) and returns each state seen, consecutive repeats collapsed;
        ``on_change(state, info)`` is called on every read whose state or info changed.
        """
        seen: list[str] = []
        last: tuple[str, Any] | None = None
        position = self.timeline.mark()
        while True:
            state, info = result.state, result.info
            if not seen or state != seen[-1]:
                seen.append(state)
            if on_change is not None and (state, info) != last:
                on_change(state, info)
            last = (state, info)
            if state in READY_STATES or self.remaining() <= 0:
                return seen
            event = self.timeline.wait_for(lambda e: e.task_id == result.id, timeout=0.005, since=position)
            position = self.timeline.mark() if event else position

    def time_scale(self, scale: float) -> AbstractContextManager[None]:
        """Compress the delays of messages published within the block (see :mod:`celery_sim.core.timewarp`)."""
        return self.harness.time_scale(scale)

    def published(self, task_id: str) -> list[Event]:
        """Every message published for ``task_id`` (the first call, then one per retry), in order."""
        return self.events(task_id, ["published"])

    def warn(self, text: str) -> None:
        """Record a caveat shown with the scenario's result (it does not fail the scenario)."""
        self.warnings.append(text)

    def progress(self, label: str, current: int, total: int) -> None:
        """Report progress of something the scenario watches (shown live by the runner)."""
        if self._on_progress is not None:
            self._on_progress(label, current, total)

    def prefork(self) -> tuple[Harness, Worker]:
        """The run's harness with a real prefork ``celery worker`` process (see :func:`~celery_sim.scenarios.extra.prefork`)."""
        from celery_sim.scenarios.extra import prefork

        return prefork(self.harness)

    def side(self, **overrides: Any) -> Harness:
        """Another harness for this run on other settings (see :func:`~celery_sim.scenarios.extra.side`)."""
        from celery_sim.scenarios.extra import side

        return side(self.harness, **overrides)

    def start_worker(
        self, queues: Iterable[str], *, name: str, concurrency: int = 1, kind: str | None = None, events: str = "off"
    ) -> Worker:
        """Start an extra worker for this scenario only (stopped when the scenario ends).

        ``kind`` ("thread" or "process") defaults to the run's worker mode; ``events``: "on" sends
        task events (``celery worker -E``), "switchable" only worker events, as a plain ``celery
        worker`` (see :data:`~celery_sim.core.workers.thread.EVENT_MODES`).
        """
        worker = self.harness.start_worker(list(queues), name=name, concurrency=concurrency, kind=kind, events=events)
        self._workers.append(worker)
        return worker

    def lasting_worker(self, queues: Iterable[str], *, name: str, concurrency: int = 1) -> Worker:
        """A worker kept for the rest of the run, shared with later scenarios (see :meth:`Harness.lasting_worker`)."""
        return self.harness.lasting_worker(list(queues), name=name, concurrency=concurrency)

    def start_worker_meanwhile(self, queues: Iterable[str], *, name: str, concurrency: int = 1) -> None:
        """Like :meth:`start_worker`, but return at once: the scenario watches while the worker starts.

        A worker process consumes before it answers ``ping`` (when :meth:`start_worker` returns),
        so a short task can be over by then; an embedded worker is quicker but the same holds.
        """
        starting = threading.Thread(
            target=self.start_worker,
            args=(list(queues),),
            kwargs={"name": name, "concurrency": concurrency},
            name=f"csim-start-{name}",
            daemon=True,
        )
        self._starting.append(starting)
        starting.start()

    def close(self) -> None:
        """Stop the workers this scenario started (waiting, bounded, for those still starting)."""
        for starting in self._starting:
            starting.join(self.harness.config.start_timeout)
        self._starting = []
        workers, self._workers = self._workers, []
        self.harness.stop_workers(workers)

    @staticmethod
    def skip(reason: str) -> None:
        raise SkipScenario(reason)


ScenarioFn = Callable[[Context], None]


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    fn: ScenarioFn = field(compare=False)
    timeout: float | None = None
    #: broker name (or result backend kind: "rpc", "db") -> why this scenario is not run there (a
    #: declared difference, shown as skipped).
    skip_on: Mapping[str, str] = field(default_factory=dict, compare=False)
    #: broker name -> what real Celery does differently there; the scenario runs and checks that.
    differs_on: Mapping[str, str] = field(default_factory=dict, compare=False)
    #: The lane it runs in, beside the main lane, on a harness of the lane's own (see
    #: :class:`~celery_sim.scenarios.runner.Runner`); None: the main lane.
    lane: str | None = None

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]


class Registry:
    """Scenarios by dotted name (``family.case``), in registration order."""

    def __init__(self) -> None:
        self._scenarios: dict[str, Scenario] = {}

    def add(self, item: Scenario) -> Scenario:
        if "." not in item.name:
            raise ValueError(f"scenario name {item.name!r} must be dotted: 'family.case'")
        if item.name in self._scenarios and self._scenarios[item.name].fn is not item.fn:
            raise ValueError(f"scenario {item.name!r} is registered twice")
        self._scenarios[item.name] = item
        return item

    def all(self) -> list[Scenario]:
        return list(self._scenarios.values())

    def families(self) -> list[str]:
        return list(dict.fromkeys(s.family for s in self._scenarios.values()))

    def select(self, selectors: Iterable[str]) -> list[Scenario]:
        """Scenarios named by ``selectors`` (a scenario name, a family name or a dotted prefix
        such as ``demo.learning`` each), without repeats."""
        chosen: dict[str, Scenario] = {}
        for selector in selectors:
            matched = [
                s
                for s in self._scenarios.values()
                if s.name == selector or s.family == selector or s.name.startswith(selector + ".")
            ]
            if not matched:
                # A dotted name is a misspelled scenario; anything else, a misspelled family first.
                groups = [list(self._scenarios), self.families()]
                close: list[str] = []
                for names in groups if "." in selector else groups[::-1]:
                    if len(close) < 3:
                        close += difflib.get_close_matches(selector, names, n=3 - len(close), cutoff=0.5)
                hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                raise UnknownScenarioError(
                    f"no scenario or family named {selector!r}.{hint} "
                    "Run 'python -m celery_sim list' to see the catalog."
                )
            chosen.update((s.name, s) for s in matched)
        return list(chosen.values())


REGISTRY = Registry()


def scenario(
    name: str,
    summary: str,
    *,
    timeout: float | None = None,
    skip_on: Mapping[str, str] | None = None,
    differs_on: Mapping[str, str] | None = None,
    lane: str | None = None,
) -> Callable[[ScenarioFn], ScenarioFn]:
    """Register the decorated function as scenario ``name`` in the catalog.

    ``skip_on`` declares brokers where the scenario is not run, each with the reason shown.
    ``differs_on`` declares brokers where Celery behaves differently, each with what differs; the
    scenario runs there and checks that behaviour (branching on :attr:`Context.broker`).
    ``lane``: a run may start it beside the scenarios of other lanes, after those of its own lane,
    on a harness the lane has to itself. For scenarios that mostly wait (on a private broker, a
    process, a timer) and whose timing checks hold beside other work; the main lane is None.
    """

    def register(fn: ScenarioFn) -> ScenarioFn:
        REGISTRY.add(Scenario(name, summary, fn, timeout, dict(skip_on or {}), dict(differs_on or {}), lane))
        return fn

    return register
