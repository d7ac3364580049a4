"""Rendering: live progress while a run goes, the final table of checks, the catalog, JSON.

Everything here reads results and writes to a rich Console; nothing here runs Celery.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from .runner import RunReport
from .scenario import Registry, Scenario, ScenarioResult, Status
from .timeline import ATTEMPT_END_KINDS, Event

__all__ = ["LiveReporter", "render_catalog", "render_report", "render_timeline", "write_json"]

STYLE = {
    Status.PASSED: ("✔", "green"),
    Status.FAILED: ("✘", "red"),
    Status.TIMEOUT: ("⏱", "yellow"),
    Status.SKIPPED: ("-", "dim"),
    Status.ERROR: ("!", "red"),
}


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


class LiveReporter:
    """A :class:`~celery_sim.runner.RunObserver` that shows the run as it goes."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._overall: TaskID | None = None
        self._bars: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    def run_started(self, scenarios: Sequence[Scenario], broker: str) -> None:
        self.console.print(
            f"[bold]celery_sim[/] running {len(scenarios)} scenario(s) on broker [cyan]{escape(broker)}[/]"
        )
        self._progress.start()
        self._overall = self._progress.add_task("scenarios", total=len(scenarios))

    def scenario_started(self, scenario: Scenario) -> None:
        if self._overall is not None:
            self._progress.update(self._overall, description=f"[bold]{scenario.name}[/]")

    def scenario_progress(self, scenario: Scenario, label: str, current: int, total: int) -> None:
        with self._lock:
            key = f"{scenario.name}:{label}"
            bar = self._bars.get(key)
            if bar is None:
                bar = self._bars[key] = self._progress.add_task(f"  {label} PROGRESS", total=total)
        self._progress.update(bar, completed=current, total=total)

    def scenario_finished(self, result: ScenarioResult) -> None:
        mark, colour = STYLE[result.status]
        passed = sum(c.passed for c in result.checks)
        detail = f"{passed}/{len(result.checks)} checks" if result.checks else ""
        line = f"[{colour}]{mark} {result.status.value:<7}[/] {result.name:<32} {result.duration_s * 1000:8.1f} ms  {detail}"
        if result.status is not Status.PASSED and result.diagnosis:
            line += f"\n    [dim]{escape(result.diagnosis)}[/]"
        for warning in result.warnings:
            line += f"\n    [yellow]⚠ {escape(warning)}[/]"
        with self._lock:
            for key in [k for k in self._bars if k.startswith(result.name + ":")]:
                self._progress.remove_task(self._bars.pop(key))
        self._progress.console.print(line)
        if self._overall is not None:
            self._progress.advance(self._overall)

    def close(self) -> None:
        self._progress.stop()


def render_report(console: Console, report: RunReport) -> None:
    """The final table (a heading row per scenario, a row per check) and the summary line."""
    table = Table(title="Verified checks", expand=True)
    table.add_column("scenario / check", ratio=5)
    table.add_column("expected", ratio=3)
    table.add_column("observed", ratio=3)
    table.add_column("", no_wrap=True, width=1)
    for result in report.results:
        mark, colour = STYLE[result.status]
        table.add_row(
            f"[bold]{result.name}[/] [dim]{result.duration_s * 1000:.1f} ms[/]",
            "",
            f"[{colour}]{result.status.value}[/]",
            f"[{colour}]{mark}[/]",
        )
        if result.diagnosis and result.status is not Status.PASSED:
            table.add_row(f"  [{colour}]{escape(result.diagnosis)}[/]", "", "", "")
        for warning in result.warnings:
            table.add_row(f"  [yellow]⚠ {escape(warning)}[/]", "", "", "")
        for check in result.checks:
            ok_mark, ok_colour = STYLE[Status.PASSED if check.passed else Status.FAILED]
            table.add_row(
                f"  {escape(check.name)}",
                escape(_short(check.expected)),
                escape(_short(check.observed)),
                f"[{ok_colour}]{ok_mark}[/]",
            )
        table.add_section()
    console.print(table)
    counts = report.counts()
    checks = [c for r in report.results for c in r.checks]
    parts = [f"{n} {status}" for status, n in counts.items() if n]
    verdict = "[bold green]ALL PASSED[/]" if report.ok else "[bold red]NOT ALL PASSED[/]"
    console.print(
        f"{verdict}  {len(report.results)} scenario(s): {', '.join(parts) or 'none'}; "
        f"{sum(c.passed for c in checks)}/{len(checks)} checks passed; broker {escape(report.broker)}; "
        f"{report.duration_s:.2f}s"
    )
    if report.interrupted:
        console.print(f"[yellow]Interrupted.[/] Not run: {', '.join(report.not_run) or 'none'}")


def render_timeline(console: Console, result: ScenarioResult, width: int | None = None) -> None:
    """One row per task of ``result``: queued (░) from publish to start, running (█) to its end."""
    if not result.events:
        return
    width = width or max(16, console.width - 62)
    t0 = min(e.at for e in result.events)
    span = max(max(e.at for e in result.events) - t0, 1e-6)

    def column(at: float) -> int:
        return min(width - 1, int((at - t0) / span * (width - 1)))

    by_task: dict[str, list[Event]] = {}
    for event in result.events:
        by_task.setdefault(event.task_id, []).append(event)
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True, style="dim")
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True, justify="right")
    for task_id, events in by_task.items():
        first = events[0].at
        started = next((e.at for e in events if e.kind == "started"), None)
        ended = next((e for e in reversed(events) if e.kind in ATTEMPT_END_KINDS), None)
        bar = [" "] * width
        queued_until = started if started is not None else (ended.at if ended else first)
        for col in range(column(first), column(queued_until) + 1):
            bar[col] = "░"
        if started is not None:
            for col in range(column(started), column(ended.at if ended else started) + 1):
                bar[col] = "█"
        colour = "red" if ended and ended.kind in ("failed", "revoked", "unknown", "rejected") else "green"
        host = next((e.hostname for e in events if e.hostname), None) or ("caller" if started is not None else "-")
        outcome = ended.kind if ended else events[-1].kind
        table.add_row(
            f"{events[0].name.rsplit('.', 1)[-1]} [dim]{task_id[:8]}[/]",
            host.split("@")[0],
            f"[{colour}]{''.join(bar)}[/]",
            f"{(first - t0) * 1000:.1f}→{((ended.at if ended else events[-1].at) - t0) * 1000:.1f} ms {outcome}",
        )
    console.print(f"[bold]{result.name}[/] timeline [dim](░ queued, █ running; {span * 1000:.1f} ms across)[/]")
    console.print(table)


def render_catalog(console: Console, registry: Registry) -> None:
    table = Table(title="Scenario catalog")
    table.add_column("scenario", style="bold", no_wrap=True)
    table.add_column("what it shows")
    for item in registry.all():
        table.add_row(item.name, escape(item.summary))
    console.print(table)
    console.print(f"{len(registry.all())} scenarios in families: {', '.join(registry.families())}")


def write_json(path: Path, report: RunReport) -> None:
    """Write ``report`` as JSON (keys: broker, scenarios, summary) atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
