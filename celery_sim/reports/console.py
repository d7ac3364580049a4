"""Rendering: live progress while a run goes, the final table of checks, the catalog, JSON.

Everything here reads results and writes to a rich Console; nothing here runs Celery.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from celery_sim.core.brokers import mask_url
from celery_sim.observe.timeline import ATTEMPT_END_KINDS, FAILED_END_KINDS, Event
from celery_sim.scenarios.matrix import Matrix
from celery_sim.scenarios.runner import RunReport
from celery_sim.scenarios.scenario import Scenario, ScenarioResult, Status

if TYPE_CHECKING:
    from celery_sim.tools.call import CallOutcome

__all__ = [
    "LiveReporter",
    "finished_line",
    "render_bench",
    "render_matrix",
    "render_report",
    "render_scale",
    "render_timeline",
    "run_header",
    "write_json",
]

STYLE = {
    Status.PASSED: ("✔", "green"),
    Status.FAILED: ("✘", "red"),
    Status.TIMEOUT: ("⏱", "yellow"),
    Status.SKIPPED: ("-", "dim"),
    Status.ERROR: ("!", "red"),
}


#: How a broker's declared difference is introduced wherever it is shown.
DIFFERENCE_LABEL = "declared difference on this broker"


def _notes(result: ScenarioResult, diagnosis_style: str) -> list[str]:
    """What is said under a scenario besides its checks: why it did not pass, what this broker
    does differently, caveats (markup; passwords masked)."""
    notes = []
    if result.diagnosis and result.status is not Status.PASSED:
        notes.append(f"[{diagnosis_style}]{escape(mask_url(result.diagnosis))}[/]")
    if result.difference:
        notes.append(f"[cyan]≠ {escape(DIFFERENCE_LABEL)}: {escape(result.difference)}[/]")
    notes.extend(f"[yellow]⚠ {escape(mask_url(warning))}[/]" for warning in result.warnings)
    return notes


def finished_line(result: ScenarioResult) -> str:
    """The line (rich markup) a scenario gets as it finishes, with its notes under it."""
    mark, colour = STYLE[result.status]
    passed = sum(c.passed for c in result.checks)
    detail = f"{passed}/{len(result.checks)} checks" if result.checks else ""
    line = (
        f"[{colour}]{mark} {result.status.value:<7}[/] {result.name:<32} {result.duration_s * 1000:8.1f} ms  {detail}"
    )
    for note in _notes(result, "dim"):
        line += f"\n    {note}"
    return line


def run_header(scenarios: Sequence[Scenario], report: RunReport) -> str:
    """The line a run starts with: how many scenarios, the broker, the results, the worker."""
    return (
        f"[bold]celery_sim[/] running {len(scenarios)} scenario(s): broker [cyan]{escape(report.broker)}[/], "
        f"results [cyan]{escape(report.result_backend)}[/], worker [cyan]{escape(report.worker)}[/]"
    )


class LiveReporter:
    """A :class:`~celery_sim.scenarios.runner.RunObserver` that shows the run as it goes."""

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
        #: The scenarios running now: one per lane.
        self._running: list[str] = []
        self._lock = threading.Lock()

    def run_started(self, scenarios: Sequence[Scenario], report: RunReport) -> None:
        self.console.print(run_header(scenarios, report))
        self._progress.start()
        self._overall = self._progress.add_task("scenarios", total=len(scenarios))

    def scenario_started(self, scenario: Scenario) -> None:
        with self._lock:
            self._running.append(scenario.name)
            self._describe()

    def _describe(self) -> None:
        if self._overall is not None:
            self._progress.update(self._overall, description=f"[bold]{escape(', '.join(self._running))}[/]")

    def scenario_progress(self, scenario: Scenario, label: str, current: int, total: int) -> None:
        with self._lock:
            key = f"{scenario.name}:{label}"
            bar = self._bars.get(key)
            if bar is None:
                bar = self._bars[key] = self._progress.add_task(f"  {label} PROGRESS", total=total)
        self._progress.update(bar, completed=current, total=total)

    def scenario_finished(self, result: ScenarioResult) -> None:
        line = finished_line(result)
        with self._lock:
            for key in [k for k in self._bars if k.startswith(result.name + ":")]:
                self._progress.remove_task(self._bars.pop(key))
            if result.name in self._running:
                self._running.remove(result.name)
                self._describe()
        self._progress.console.print(line)
        if self._overall is not None:
            self._progress.advance(self._overall)

    def close(self) -> None:
        self._progress.stop()


def render_report(console: Console, report: RunReport, *, all_checks: bool = False) -> None:
    """What a run ends with: every scenario that did not pass, with its failing checks in full and
    its diagnosis, then one summary line naming them. ``all_checks``: the table of every check."""
    if all_checks:
        _render_table(console, report)
    failing = report.not_passed()
    if failing and not all_checks:
        console.print()
        console.print(f"[bold]Did not pass ({len(failing)}):[/]")
        for result in failing:
            _render_failure(console, result)
    _render_summary(console, report)


def _render_failure(console: Console, result: ScenarioResult) -> None:
    """One scenario that did not pass: its failing checks (expected, observed, wrapped, never cut)
    and the notes under it."""
    mark, colour = STYLE[result.status]
    console.print(
        f"[{colour}]{mark} {result.status.value}[/] [bold]{escape(result.name)}[/] [dim]{result.duration_s * 1000:.1f} ms[/]"
    )
    for note in _notes(result, colour):
        console.print(Padding(note, (0, 0, 0, 4)))
    for check in result.checks:
        if check.passed:
            continue
        console.print(Padding(f"[red]✘[/] {escape(check.name)}", (0, 0, 0, 4)))
        console.print(Padding(f"[dim]expected:[/] {escape(_text(check.expected))}", (0, 0, 0, 8)))
        console.print(Padding(f"[dim]observed:[/] {escape(_text(check.observed))}", (0, 0, 0, 8)))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _render_table(console: Console, report: RunReport) -> None:
    """Every scenario and every check: a heading row per scenario, a row per check."""
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
        for note in _notes(result, colour):
            table.add_row(f"  {note}", "", "", "")
        for check in result.checks:
            ok_mark, ok_colour = STYLE[
                Status.SKIPPED if check.skipped else Status.PASSED if check.passed else Status.FAILED
            ]
            table.add_row(
                f"  {escape(check.name)}",
                escape(_text(check.expected)),
                escape(_text(check.observed)),
                f"[{ok_colour}]{ok_mark}[/]",
            )
        table.add_section()
    console.print(table)


def _render_summary(console: Console, report: RunReport) -> None:
    counts = report.counts()
    checks = [c for r in report.results for c in r.checks]
    parts = [f"{n} {status}" for status, n in counts.items() if n]
    if report.interrupted:
        verdict = "[bold yellow]INTERRUPTED[/]"
    else:
        verdict = "[bold green]ALL PASSED[/]" if report.ok else "[bold red]NOT ALL PASSED[/]"
    console.print(
        f"{verdict}  {len(report.results)} scenario(s): {', '.join(parts) or 'none'}; "
        f"{sum(c.passed for c in checks)}/{len(checks)} checks passed; broker {escape(report.broker)}, "
        f"results {escape(report.result_backend)}, worker {escape(report.worker)}; {report.duration_s:.2f}s"
    )
    failing = report.not_passed()
    if failing:
        console.print("[red]Not passed:[/] " + ", ".join(f"{escape(r.name)} ({r.status.value})" for r in failing))
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
        colour = "red" if ended and ended.kind in FAILED_END_KINDS else "green"
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


class _HasJson(Protocol):
    def to_json(self) -> dict[str, Any]: ...


def write_json(path: Path, report: _HasJson) -> None:
    """Write ``report`` as JSON atomically (a run: broker, scenarios, summary; a matrix: brokers,
    scenarios, undeclared_differences; a bench: sizes, setups)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def render_matrix(console: Console, matrix: Matrix) -> None:
    """One row per scenario, one column per broker; declared differences and skips marked as such."""
    table = Table(title="Fidelity matrix: the same scenarios on each broker", expand=True)
    table.add_column("scenario", ratio=3)
    reachable = [c for c in matrix.columns if c.unreachable is None]
    for column in reachable:
        table.add_column(column.kind, ratio=1, no_wrap=True)
    for item in matrix.scenarios:
        cells = []
        for column in reachable:
            result = matrix.result(column, item.name)
            if result is None:
                cells.append("[dim]not run[/]")
                continue
            mark, colour = STYLE[result.status]
            agrees = matrix.agrees(item, column)
            if result.status is Status.PASSED and column.kind in item.differs_on:
                cells.append(f"[{colour}]{mark}[/] [cyan]≠[/]")
            elif result.status is Status.SKIPPED and agrees:
                cells.append("[dim]- skip[/]")
            elif agrees:
                cells.append(f"[{colour}]{mark}[/]")
            else:
                cells.append(f"[bold red]{mark} {result.status.value}![/]")
        table.add_row(escape(item.name), *cells)
    console.print(table)
    for column in matrix.columns:
        if column.unreachable:
            console.print(f"[yellow]not run on {escape(column.label)}:[/] {escape(mask_url(column.unreachable))}")
    notes = {
        (c.kind, item.name, text)
        for item in matrix.scenarios
        for c in reachable
        for text in [item.differs_on.get(c.kind) or item.skip_on.get(c.kind)]
        if text
    }
    console.print(
        "✔ passed, [cyan]✔ ≠[/] passed checking what this broker does differently, [dim]- skip[/] declared skip, "
        "[bold red]![/] an undeclared difference"
    )
    took = ", ".join(
        f"{c.kind} {matrix.reports[c.broker].duration_s:.0f} s" for c in reachable if c.broker in matrix.reports
    )
    console.print(f"Run times: {took}")
    if notes:
        console.print("Declared, per scenario and broker:")
    for kind, name, text in sorted(notes, key=lambda note: (note[1], note[0])):
        console.print(f"  [cyan]{escape(name)} on {kind}:[/] {escape(text)}")
    problems = matrix.undeclared()
    if problems:
        console.print(f"[bold red]{len(problems)} UNDECLARED DIFFERENCE(S)[/]")
        for line in problems:
            console.print(f"  [red]{escape(line)}[/]")
    else:
        console.print(
            f"[bold green]SAME VERDICTS[/] on {', '.join(c.label for c in reachable)}: "
            "every scenario passes on each broker, but for the declared differences above"
        )


def _figure(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


#: Short column names for the bench's set-ups (the legend is printed under the table).
_SHORT = {
    "fakeredis": "fakered.",
    "redis-prefork": "redis-pf",
    "amqp-prefork": "amqp-pf",
    "celery-test-worker": "ctw",
    "celery-test-worker-tuned": "ctw-tun.",
    "dramatiq-stub": "dramatiq",
}


def render_scale(console: Console, report: Any) -> None:
    """``bench --scale``: tasks/s per broker and count of worker processes, with the gain over one."""
    table = Table(title=f"Scale-out: N = {report.n:,} tasks, prefork workers of 2 slots each on one queue")
    for column in ("broker", "workers", "used", "with results /s", "gain", "without results /s", "gain"):
        table.add_column(column, justify="left" if column == "broker" else "right")
    first: dict[str, Any] = {}
    for point in report.points:
        if point.workers == 0:
            continue
        base = first.setdefault(point.broker, point)

        def gain(value: float | None, one: float | None) -> str:
            return f"x{value / one:.2f}" if value and one else "-"

        table.add_row(
            point.broker, str(point.workers), str(point.workers_used or "-"),
            f"{point.with_results_per_s:,.0f}" if point.with_results_per_s else "-",
            gain(point.with_results_per_s, base.with_results_per_s),
            f"{point.without_results_per_s:,.0f}" if point.without_results_per_s else "-",
            gain(point.without_results_per_s, base.without_results_per_s),
        )  # fmt: skip
    console.print(table)
    for point in report.points:
        if point.error:
            console.print(f"  {point.broker} x{point.workers}: {escape(mask_url(point.error))}")


#: Characters a set-up's column of the bench table takes (its widest figure, padding, border), and
#: the figure names' column.
_BENCH_COLUMN, _BENCH_LABELS = 12, 18


def render_bench(console: Console, found: Sequence[Any], sizes: Sequence[int]) -> None:
    """The bench's figures, one column per set-up, with each against the default mode (memory):
    ``x 2.5`` under a figure means 2.5 times the default's (slower where lower is better).

    A console too narrow for every set-up gets them in several tables, the default mode first in each.
    """
    ran = [f for f in found if f.p50_ms is not None]
    base = next((f for f in ran if f.setup == "memory"), None)
    others = [f for f in ran if f is not base]
    per_table = max(1, (console.width - _BENCH_LABELS) // _BENCH_COLUMN - (base is not None))
    chunks = [others[i : i + per_table] for i in range(0, len(others), per_table)] or [[]]
    for number, chunk in enumerate(chunks):
        columns = ([base] if base is not None else []) + chunk
        title = "bench: delay().get() round trips; N tasks sent at once (every result checked)"
        console.print(_bench_table(columns, base, sizes, title if number == 0 else None))
    console.print(
        "[dim]xN: N times the default mode's figure (memory). ctw: Celery's own test worker "
        "(celery.contrib.testing.worker.start_worker), defaults; ctw-tun.: polling every 1 ms.[/]"
    )
    for figures in found:
        for note in ([figures.error] if figures.error else []) + figures.notes:
            console.print(f"[yellow]{figures.setup}:[/] {escape(note)}")


def _bench_table(ran: Sequence[Any], base: Any, sizes: Sequence[int], title: str | None) -> Table:
    table = Table(title=title, padding=(0, 1))
    table.add_column("figure", no_wrap=True)
    for figures in ran:
        table.add_column(_SHORT.get(figures.setup, figures.setup), justify="right", no_wrap=True)

    def row(label: str, pick: Callable[[Any], float | None], fmt: str, ratio: bool = False) -> None:
        cells = [_figure(pick(f), fmt) for f in ran]
        table.add_row(label, *cells)
        mine = pick(base) if base is not None else None
        if ratio and mine:
            table.add_row("", *[f"[dim]x{theirs / mine:.2f}[/]" if (theirs := pick(f)) else "" for f in ran])

    row("ready s", lambda f: f.ready_s, ".3f")
    row("ready again s", lambda f: f.ready_again_s, ".3f")
    row("p50 ms", lambda f: f.p50_ms, ".2f", ratio=True)
    row("p99 ms", lambda f: f.p99_ms, ".2f", ratio=True)
    for n in sizes:

        def per_task(f: Any, key: str = str(n)) -> float | None:
            value: float | None = f.per_task_us.get(key)
            return value

        row(f"µs/task {n:,}", per_task, ",.0f", ratio=True)
    row("idle CPU s/2s", lambda f: f.idle_cpu_s_per_2s, ".4f")
    row("stop s", lambda f: f.stop_s, ".3f")
    row("MiB/1k tasks", lambda f: f.rss_mib_per_1000, ".1f")
    return table


def render_call(console: Console, outcome: CallOutcome, logical: Callable[[str], str]) -> None:
    """The outcome of ``call``: each event of the run on its own line, then the result or the diagnosis."""
    t0 = min((e.at for e in outcome.events), default=0.0)
    for event in outcome.events:
        where = event.data.get("queue") if event.kind == "published" else event.hostname
        detail = f" {logical(str(where))}" if where else ""
        extra = ""
        if event.kind == "published" and event.data.get("countdown") is not None:
            extra = f" (countdown {event.data['countdown']:g}s)"
        elif event.kind == "failed":
            extra = f" {event.data.get('exception')}: {event.data.get('message')}"
        elif event.kind == "progress":
            extra = f" {event.data.get('state')} {event.data.get('meta')}"
        console.print(
            f"  +{(event.at - t0) * 1000:8.1f} ms  {event.kind:<9} {escape(event.name)}{escape(detail)}{escape(extra)}"
        )
    colour = "green" if outcome.ok else "red"
    console.print(
        f"[{colour}]{outcome.state}[/] {escape(outcome.name)} {outcome.task_id} in {outcome.duration_s * 1000:.1f} ms"
    )
    if outcome.ok:
        console.print(f"result: {escape(repr(outcome.result))}")
    if outcome.error:
        console.print(f"[red]error:[/] {escape(outcome.error)}")
    if outcome.diagnosis:
        console.print(f"[yellow]diagnosis:[/] {escape(outcome.diagnosis)}")
