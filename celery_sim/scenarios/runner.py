"""Runs scenarios against a harness, each within its deadline, and collects their results."""

from __future__ import annotations

import ctypes
import logging
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import monotonic
from typing import Protocol

from celery_sim.core.harness import Harness
from celery_sim.core.installed import missing_module
from celery_sim.errors import CelerySimError
from celery_sim.observe.diagnose import diagnose_pending
from celery_sim.scenarios.scenario import (
    Check,
    Context,
    Scenario,
    ScenarioResult,
    SkipScenario,
    Status,
    StoredStateRace,
    WaitTimeout,
)

__all__ = ["RunObserver", "RunReport", "Runner", "ScenarioCancelled"]

log = logging.getLogger(__name__)

#: How long a scenario may run past its deadline to report its own timeout before the watchdog acts.
REPORT_MARGIN_S = 0.5
#: How long a cancelled scenario thread gets to unwind before the harness is rebuilt.
CANCEL_GRACE_S = 2.0


class ScenarioCancelled(BaseException):
    """Raised inside a scenario's thread by the watchdog (a BaseException, so ``except Exception`` won't swallow it)."""


class RunObserver(Protocol):
    """Receives the run's progress; called from the runner's and the scenarios' threads."""

    def run_started(self, scenarios: Sequence[Scenario], report: RunReport) -> None: ...
    def scenario_started(self, scenario: Scenario) -> None: ...
    def scenario_progress(self, scenario: Scenario, label: str, current: int, total: int) -> None: ...
    def scenario_finished(self, result: ScenarioResult) -> None: ...


@dataclass
class RunReport:
    broker: str
    results: list[ScenarioResult] = field(default_factory=list)
    duration_s: float = 0.0
    interrupted: bool = False
    not_run: list[str] = field(default_factory=list)
    #: The result backend as it may be shown (no password), and where the main worker ran.
    result_backend: str = ""
    worker: str = "thread"

    def not_passed(self) -> list[ScenarioResult]:
        """The scenarios that failed, timed out or errored, in run order."""
        return [r for r in self.results if r.status not in (Status.PASSED, Status.SKIPPED)]

    def counts(self) -> dict[str, int]:
        counts = {status.value: 0 for status in Status}
        for result in self.results:
            counts[result.status.value] += 1
        return counts

    @property
    def ok(self) -> bool:
        """True when every scenario passed or was skipped, and the run was not interrupted."""
        return not self.interrupted and all(r.status in (Status.PASSED, Status.SKIPPED) for r in self.results)

    def to_json(self) -> dict[str, object]:
        return {
            "broker": self.broker,
            "result_backend": self.result_backend,
            "worker": self.worker,
            "duration_s": round(self.duration_s, 3),
            "interrupted": self.interrupted,
            "scenarios": [r.to_json() for r in self.results],
            "summary": self.counts(),
        }


def _raise_in_thread(thread: threading.Thread, exc_type: type[BaseException]) -> None:
    """Ask ``thread`` to raise ``exc_type`` at its next Python instruction (it cannot interrupt a C call)."""
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type))


class _Attempt:
    """One scenario running in its own thread, so that the runner can stop waiting for it."""

    def __init__(self, harness: Harness, ctx: Context) -> None:
        self.harness = harness
        self.ctx = ctx
        self.done = threading.Event()
        self.status = Status.ERROR
        self.diagnosis: str | None = None
        self.thread = threading.Thread(target=self._run, name=f"csim-scenario-{ctx.scenario.name}", daemon=True)

    def _run(self) -> None:
        self.harness.app.set_current()
        try:
            self.ctx.scenario.fn(self.ctx)
            self.status = Status.PASSED
        except SkipScenario as exc:
            self.status, self.diagnosis = Status.SKIPPED, str(exc)
        except WaitTimeout as exc:
            self.status, self.diagnosis = Status.TIMEOUT, exc.diagnosis
        except StoredStateRace as exc:  # a failed check (recorded here), not a timeout
            self.ctx.race_found(exc)
            self.status, self.diagnosis = Status.PASSED, str(exc)
        except ScenarioCancelled:
            self.status = Status.TIMEOUT
        except Exception as exc:
            self.status = Status.ERROR
            missing = missing_module(exc, f"scenario {self.ctx.scenario.name}")
            self.diagnosis = str(missing) if missing else f"{type(exc).__name__}: {exc}"
            log.debug("scenario %s raised\n%s", self.ctx.scenario.name, traceback.format_exc())
        finally:
            try:
                self.ctx.close()
            except CelerySimError as exc:
                self.diagnosis = f"{self.diagnosis or ''} (cleanup: {exc})".strip()
            except ScenarioCancelled:  # the watchdog gave up while the scenario's workers stopped
                self.diagnosis = f"{self.diagnosis or ''} (cancelled while stopping its workers)".strip()
            try:
                self.harness.release_thread_backend()
            except Exception as exc:  # a broker gone away: the run goes on
                log.debug("could not release the backend of %s: %r", self.ctx.scenario.name, exc)
            self.done.set()


class Runner:
    """Runs scenarios one after another on one harness, rebuilt if a scenario leaves it unusable.

    ``timeout`` overrides every scenario's own deadline; ``run_timeout`` bounds the whole run
    (scenarios not started by then are reported as skipped). With ``lanes``, the scenarios that
    declare a ``lane`` run one after another in that lane, beside the main lane (the scenarios
    declaring none) and the other lanes, each lane on a harness of its own; the report lists every
    result in the order given. (If every scenario chosen declares a lane, the first lane runs on
    the main harness.)
    """

    def __init__(
        self,
        make_harness: Callable[[], Harness],
        observer: RunObserver | None = None,
        *,
        timeout: float | None = None,
        default_timeout: float = 10.0,
        run_timeout: float | None = None,
        lanes: bool = False,
    ) -> None:
        self._make_harness = make_harness
        self._observer = observer
        self._timeout = timeout
        self._default_timeout = default_timeout
        self._run_timeout = run_timeout
        self._lanes = lanes
        #: Set when the run is interrupted: the other lanes stop at their next scenario.
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def run(self, scenarios: Sequence[Scenario]) -> RunReport:
        started = monotonic()
        run_deadline = None if self._run_timeout is None else started + self._run_timeout
        harness = self._make_harness()
        report = RunReport(
            broker=harness.broker_label, result_backend=harness.result_backend_label, worker=harness.config.worker
        )
        if self._observer:
            self._observer.run_started(scenarios, report)
        main, beside = self._split(scenarios)
        lanes = [
            threading.Thread(target=self._other_lane, args=(its, report, run_deadline), name=f"csim-lane-{n}")
            for n, its in enumerate(beside, 1)
        ]
        for thread in lanes:
            thread.start()
        try:
            self._lane(harness, main, report, run_deadline)
        except KeyboardInterrupt:
            report.interrupted = True
        finally:
            if report.interrupted:
                self._stopping.set()
            for thread, its in zip(lanes, beside, strict=True):
                self._join(thread, its, report)
            order = {s.name: i for i, s in enumerate(scenarios)}
            report.results.sort(key=lambda r: order.get(r.name, len(order)))
            report.duration_s = monotonic() - started
        return report

    def _split(self, scenarios: Sequence[Scenario]) -> tuple[list[Scenario], list[list[Scenario]]]:
        """The main lane's scenarios, and those of each declared lane (in order of first mention)."""
        if not self._lanes or len(scenarios) < 2:
            return list(scenarios), []
        main: list[Scenario] = []
        declared: dict[str, list[Scenario]] = {}
        for item in scenarios:
            if item.lane:
                declared.setdefault(item.lane, []).append(item)
            else:
                main.append(item)
        beside = list(declared.values())
        if not main and beside:
            main = beside.pop(0)
        return main, beside

    def _join(self, lane: threading.Thread, beside: Sequence[Scenario], report: RunReport) -> None:
        """Wait for a lane (bounded by its scenarios' deadlines), stopping the lanes on Ctrl-C."""
        bound = sum(self._timeout or s.timeout or self._default_timeout for s in beside) + 30.0
        deadline = monotonic() + bound
        while lane.is_alive() and monotonic() < deadline:
            try:
                lane.join(0.2)
            except KeyboardInterrupt:
                report.interrupted = True
                self._stopping.set()

    def _other_lane(self, scenarios: Sequence[Scenario], report: RunReport, run_deadline: float | None) -> None:
        try:
            self._lane(None, scenarios, report, run_deadline)
        except KeyboardInterrupt:  # the run was interrupted: what ran is reported
            pass
        except Exception as exc:  # a harness that could not even be built: its scenarios error
            log.warning("a lane stopped: %r", exc)
            for item in scenarios:
                if not any(r.name == item.name for r in report.results):
                    self._finish(report, ScenarioResult(item.name, item.summary, Status.ERROR, 0.0, diagnosis=str(exc)))

    def _lane(
        self, harness: Harness | None, scenarios: Sequence[Scenario], report: RunReport, run_deadline: float | None
    ) -> None:
        """Run ``scenarios`` one after another on ``harness`` (or a new one), then stop it."""
        harness = harness or self._make_harness()
        try:
            for index, item in enumerate(scenarios):
                if self._stopping.is_set():
                    with self._lock:
                        report.not_run += [s.name for s in scenarios[index:]]
                    break
                kinds = [harness.broker.name, *([harness.backend_kind] if harness.backend_kind else [])]
                declared = next(((k, item.skip_on[k]) for k in kinds if k in item.skip_on), None)
                if declared:
                    self._finish(report, self._skipped(item, f"declared for {declared[0]}: {declared[1]}"))
                    continue
                if run_deadline is not None and monotonic() >= run_deadline:
                    self._finish(
                        report, self._skipped(item, f"run deadline ({self._run_timeout:g}s) passed before it started")
                    )
                    continue
                try:
                    harness = self._ensure_started(harness)
                except Exception as exc:
                    # Starting again would fail the same way, once per scenario (no worker, no
                    # broker): report it once and skip the rest.
                    why = missing_module(exc, "the harness") or exc
                    self._finish(
                        report,
                        ScenarioResult(
                            item.name, item.summary, Status.ERROR, 0.0, diagnosis=f"harness did not start: {why}"
                        ),
                    )
                    for rest in scenarios[index + 1 :]:
                        self._finish(report, self._skipped(rest, "not run: the harness did not start (see above)"))
                    break
                try:
                    result, usable = self._run_one(harness, item)
                except KeyboardInterrupt:
                    with self._lock:
                        report.not_run += [s.name for s in scenarios[index:]]
                    raise
                self._finish(report, result)
                if not usable:
                    self._stop(harness)
                    harness = self._make_harness()
        finally:
            self._stop(harness)

    def _finish(self, report: RunReport, result: ScenarioResult) -> None:
        with self._lock:
            report.results.append(result)
        if self._observer:
            self._observer.scenario_finished(result)

    @staticmethod
    def _skipped(item: Scenario, reason: str) -> ScenarioResult:
        return ScenarioResult(item.name, item.summary, Status.SKIPPED, 0.0, diagnosis=reason)

    @staticmethod
    def _ensure_started(harness: Harness) -> Harness:
        if not harness.running:
            harness.start()
        return harness

    @staticmethod
    def _stop(harness: Harness) -> None:
        try:
            harness.stop()
        except CelerySimError as exc:
            log.warning("harness did not stop cleanly: %s", exc)

    def _run_one(self, harness: Harness, item: Scenario) -> tuple[ScenarioResult, bool]:
        """Run ``item``; returns its result and whether the harness is still fit for the next one."""
        limit = self._timeout or item.timeout or self._default_timeout
        started = monotonic()
        observer = self._observer

        def on_progress(label: str, current: int, total: int) -> None:
            if observer:
                observer.scenario_progress(item, label, current, total)

        ctx = Context(harness, item, deadline=started + limit, on_progress=on_progress)
        attempt = _Attempt(harness, ctx)
        if observer:
            observer.scenario_started(item)
        usable = True
        try:
            attempt.thread.start()
            until = started + limit + REPORT_MARGIN_S
            finished = attempt.done.wait(max(0.0, min(0.2, until - monotonic())))
            while not finished and monotonic() < until:
                if self._stopping.is_set():  # the run was interrupted (this is another lane)
                    raise KeyboardInterrupt
                finished = attempt.done.wait(max(0.0, min(0.2, until - monotonic())))
        except KeyboardInterrupt:  # may arrive at any point once the scenario runs
            self._cancel(attempt)
            raise
        if not finished:
            diagnosis = (
                diagnose_pending(harness, ctx.since)
                or "the scenario's own code did not return (no task of it was pending)"
            )
            usable = self._cancel(attempt)
            attempt.status = Status.TIMEOUT
            attempt.diagnosis = f"deadline {limit:g}s passed: {diagnosis}"
            if not usable:
                attempt.diagnosis += "; the scenario did not stop when cancelled, so the harness was rebuilt"
        checks: list[Check] = list(ctx.checks)
        status = attempt.status
        if status is Status.PASSED:
            if not checks:
                status, attempt.diagnosis = (
                    Status.ERROR,
                    "the scenario made no checks (a scenario must verify something)",
                )
            elif not all(c.passed for c in checks):
                status = Status.FAILED
        if usable:
            leftover = harness.purge()
            if leftover:
                log.debug("purged %d message(s) left by %s", leftover, item.name)
        events = harness.timeline.events(since=ctx.since)
        result = ScenarioResult(
            item.name, item.summary, status, monotonic() - started, checks, attempt.diagnosis, events
        )
        result.warnings.extend(ctx.warnings)
        result.difference = item.differs_on.get(harness.broker.name)
        return result, usable

    @staticmethod
    def _cancel(attempt: _Attempt) -> bool:
        """Stop a scenario thread; returns False if it would not stop (the harness is then unfit)."""
        _raise_in_thread(attempt.thread, ScenarioCancelled)
        attempt.done.wait(CANCEL_GRACE_S)
        return attempt.done.is_set()
