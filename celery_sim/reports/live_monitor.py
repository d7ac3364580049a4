"""The live monitor on a terminal: a rich Live view refreshed at a bounded rate, on its own thread.

:class:`LiveMonitorView` redraws ``render_snapshot(snapshot())`` every ``interval`` seconds (at
most) and prints lines above it; :class:`MonitorReporter` is the run observer of
``complete --monitor``: each scenario's line as it finishes, and the run's workers, queues and
tasks under them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.text import Text

from celery_sim.reports.console import finished_line, run_header
from celery_sim.reports.monitor_view import render_snapshot
from celery_sim.tools.monitor import Snapshot, run_snapshot

if TYPE_CHECKING:
    from celery_sim.core.harness import Harness
    from celery_sim.scenarios.runner import RunReport
    from celery_sim.scenarios.scenario import Scenario, ScenarioResult

__all__ = ["MIN_INTERVAL_S", "LiveMonitorView", "MonitorReporter"]

log = logging.getLogger(__name__)

#: The fastest refresh allowed (a monitor must not load what it watches).
MIN_INTERVAL_S = 0.2


class LiveMonitorView:
    """A live view of ``snapshot()``, redrawn every ``interval`` s until :meth:`stop`."""

    def __init__(self, console: Console, snapshot: Callable[[], Snapshot | None], *, interval: float = 1.0) -> None:
        self.console = console
        self.snapshot = snapshot
        self.interval = max(MIN_INTERVAL_S, interval)
        self.footer = ""
        self._live = Live(Text("starting..."), console=console, auto_refresh=False, redirect_stdout=False)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._live.start()
        self._thread = threading.Thread(target=self._run, name="csim-monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.refresh()
            self._stopping.wait(self.interval)

    def refresh(self) -> None:
        try:
            snapshot = self.snapshot()
        except Exception as exc:  # the watched run may be between harnesses; show the last view
            log.debug("monitor snapshot failed: %r", exc)
            return
        if snapshot is not None:
            height = self.console.height if self.console.is_terminal else None
            self._live.update(render_snapshot(snapshot, footer=self.footer, height=height), refresh=True)

    def print(self, line: str) -> None:
        self._live.console.print(line)

    def stop(self) -> None:
        """Stop refreshing, draw the last view, and leave it on the terminal; safe to call twice."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        self.refresh()
        self._live.stop()
        self.console.line()


class MonitorReporter:
    """``complete --monitor``: the run's lines, and its workers, queues and tasks live under them."""

    def __init__(self, console: Console, *, interval: float = 0.5) -> None:
        self._harness: Harness | None = None
        self._view = LiveMonitorView(console, self._snapshot, interval=interval)
        self._total = 0
        self._done = 0
        self._last: Snapshot | None = None

    def watch(self, harness: Harness) -> Harness:
        """Show ``harness`` (the runner's factory passes each harness it builds through this)."""
        self._harness = harness
        return harness

    def _snapshot(self) -> Snapshot | None:
        harness = self._harness
        if harness is not None and harness.running:
            self._last = run_snapshot(harness)
        return self._last  # after the run: the view as it last was

    def run_started(self, scenarios: Sequence[Scenario], report: RunReport) -> None:
        self._view.console.print(run_header(scenarios, report))
        self._total = len(scenarios)
        self._view.start()

    def scenario_started(self, scenario: Scenario) -> None:
        self._view.footer = f"running {scenario.name} ({self._done + 1}/{self._total}); Ctrl-C stops the run"

    def scenario_progress(self, scenario: Scenario, label: str, current: int, total: int) -> None:
        pass  # the tasks table shows each task's progress

    def scenario_finished(self, result: ScenarioResult) -> None:
        self._done += 1
        self._view.print(finished_line(result))
        self._view.refresh()

    def close(self) -> None:
        self._view.footer = f"{self._done}/{self._total} scenario(s) done"
        self._view.stop()
