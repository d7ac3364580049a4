"""One self-contained HTML file of a run: the summary, every scenario and check, and per scenario
an SVG timeline of each task's life (queued, running, waiting for a retry, done or failed).

No script, no network, no external stylesheet or font: the file opens anywhere, offline.
Passwords are masked.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from celery_sim.core.brokers import mask_url
from celery_sim.observe.timeline import FAILED_END_KINDS, TASK_END_KINDS, Event
from celery_sim.scenarios.matrix import Matrix
from celery_sim.scenarios.runner import RunReport
from celery_sim.scenarios.scenario import ScenarioResult, Status

__all__ = ["html_report", "matrix_html", "timeline_svg", "write_html", "write_matrix_html"]

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #1b1f24; max-width: 1100px; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { font-size: 1.15em; margin: 0; }
.summary { padding: .8em 1em; border-radius: 6px; margin: 1em 0 2em; font-weight: 600; }
.ok { background: #e6f4ea; color: #14532d; } .bad { background: #fdecea; color: #7f1d1d; }
section { border: 1px solid #d0d7de; border-radius: 6px; padding: .8em 1em; margin: 0 0 1.2em; }
.status { display: inline-block; min-width: 5.5em; font-weight: 600; }
.passed { color: #1a7f37; } .failed, .timeout, .error { color: #cf222e; } .skipped { color: #6e7781; }
table { border-collapse: collapse; width: 100%; margin: .6em 0; font-size: 13px; }
td, th { border-bottom: 1px solid #eaeef2; padding: .25em .5em; text-align: left; vertical-align: top; }
td.v { font-family: ui-monospace, monospace; word-break: break-word; }
.note { background: #fff8c5; padding: .4em .6em; border-radius: 4px; margin: .4em 0; }
.diag { background: #fdecea; padding: .4em .6em; border-radius: 4px; margin: .4em 0; }
.diff { background: #ddf4ff; padding: .4em .6em; border-radius: 4px; margin: .4em 0; }
.meta { color: #57606a; font-size: 13px; }
svg text { font: 11px ui-monospace, monospace; fill: #24292f; }
"""

#: Colours of a task's segments on the timeline.
_QUEUED, _RUNNING, _FAILED, _RETRY_WAIT = "#afb8c1", "#2da44e", "#cf222e", "#d4a72c"


def _e(value: object) -> str:
    return html.escape(mask_url(str(value)))


def timeline_svg(events: Sequence[Event], width: int = 1000) -> str:
    """Each task of ``events`` as a row on one time axis: grey queued, green running (red if the
    attempt failed), amber waiting for its retry; ticks in milliseconds from the first event."""
    if not events:
        return ""
    by_task: dict[str, list[Event]] = {}
    for event in events:
        by_task.setdefault(event.task_id, []).append(event)
    t0 = min(e.at for e in events)
    span = max(max(e.at for e in events) - t0, 1e-3)
    label_w, row_h, top = 230, 18, 22
    plot_w = width - label_w - 10

    def x(at: float) -> float:
        return label_w + (at - t0) / span * plot_w

    parts: list[str] = []
    decimals = 1 if span < 0.02 else 0
    for tick in range(6):
        at = t0 + span * tick / 5
        anchor = "start" if tick == 0 else "end" if tick == 5 else "middle"
        parts.append(
            f'<line x1="{x(at):.1f}" y1="{top - 6}" x2="{x(at):.1f}" y2="{top + row_h * len(by_task)}" stroke="#eaeef2"/>'
        )
        parts.append(
            f'<text x="{x(at):.1f}" y="{top - 9}" text-anchor="{anchor}">{(at - t0) * 1000:.{decimals}f} ms</text>'
        )
    for row, (task_id, task_events) in enumerate(by_task.items()):
        y = top + row * row_h
        name = task_events[0].name.rsplit(".", 1)[-1]
        parts.append(
            f'<text x="4" y="{y + 12}"><title>{_e(task_events[0].name)} {_e(task_id)}</title>{_e(name)} {_e(task_id[:8])}</text>'
        )
        queued_since: float | None = None
        running_since: float | None = None
        for event in task_events:
            if event.kind == "published":
                queued_since = event.at
            elif event.kind == "started":
                if queued_since is not None:
                    parts.append(_bar(x(queued_since), x(event.at), y, _QUEUED, "queued"))
                queued_since, running_since = None, event.at
            elif event.kind == "retried" and running_since is not None:
                parts.append(_bar(x(running_since), x(event.at), y, _RUNNING, "attempt before its retry"))
                running_since = None
                queued_since = None
                next_start = next((e.at for e in task_events if e.kind == "started" and e.at > event.at), None)
                if next_start is not None:
                    parts.append(_bar(x(event.at), x(next_start), y, _RETRY_WAIT, "waiting for the retry"))
            elif event.kind in TASK_END_KINDS:
                start = running_since if running_since is not None else queued_since
                if start is not None:
                    colour = _FAILED if event.kind in FAILED_END_KINDS else _RUNNING
                    parts.append(_bar(x(start), x(event.at), y, colour, event.kind))
                running_since = queued_since = None
        if queued_since is not None:  # never started within the run: queued to the end
            parts.append(_bar(x(queued_since), x(t0 + span), y, _QUEUED, "still queued"))
    height = top + row_h * len(by_task) + 4
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="task timeline">' + "".join(parts) + "</svg>"
    )


def _bar(x1: float, x2: float, y: float, colour: str, what: str) -> str:
    return (
        f'<rect x="{x1:.1f}" y="{y + 3}" width="{max(x2 - x1, 1.5):.1f}" height="12" rx="2" fill="{colour}">'
        f"<title>{_e(what)}</title></rect>"
    )


def _scenario(result: ScenarioResult) -> str:
    rows = "".join(
        f'<tr><td class="{"skipped" if c.skipped else ("passed" if c.passed else "failed")}">'
        f"{'skipped' if c.skipped else ('✔' if c.passed else '✘')}</td><td>{_e(c.name)}</td>"
        f'<td class="v">{_e(repr(c.expected))}</td><td class="v">{_e(repr(c.observed))}</td></tr>'
        for c in result.checks
    )
    passed = sum(1 for c in result.checks if c.passed)
    blocks = [
        f'<section id="{_e(result.name)}"><h2><span class="status {result.status.value}">{result.status.value}</span> '
        f"{_e(result.name)}</h2>",
        f'<div class="meta">{_e(result.summary)} · {result.duration_s * 1000:.1f} ms · {passed}/{len(result.checks)} checks</div>',
    ]
    if result.difference:
        blocks.append(f'<div class="diff">≠ declared difference on this broker: {_e(result.difference)}</div>')
    blocks += [f'<div class="note">⚠ {_e(w)}</div>' for w in result.warnings]
    if result.diagnosis:
        blocks.append(f'<div class="diag">diagnosis: {_e(result.diagnosis)}</div>')
    if rows:
        blocks.append(f"<table><tr><th></th><th>check</th><th>expected</th><th>observed</th></tr>{rows}</table>")
    blocks.append(timeline_svg(result.events))
    blocks.append("</section>")
    return "\n".join(blocks)


def html_report(report: RunReport, title: str = "celery_sim run") -> str:
    counts = report.counts()
    checks = [c for r in report.results for c in r.checks]
    ok = report.ok
    summary = (
        f"{'ALL PASSED' if ok else 'NOT PASSED'} · {len(report.results)} scenario(s): "
        + ", ".join(f"{n} {status}" for status, n in counts.items() if n)
        + f" · {sum(1 for c in checks if c.passed)}/{len(checks)} checks passed · {report.duration_s:.2f} s"
    )
    not_passed = [r.name for r in report.results if r.status not in (Status.PASSED, Status.SKIPPED)]
    index = f"<p>Not passed: {', '.join(f'<a href=#{_e(n)}>{_e(n)}</a>' for n in not_passed)}</p>" if not_passed else ""
    legend = (
        f'<p class="meta">Timelines: <span style="color:{_QUEUED}">■</span> queued · '
        f'<span style="color:{_RUNNING}">■</span> running · <span style="color:{_FAILED}">■</span> failed · '
        f'<span style="color:{_RETRY_WAIT}">■</span> waiting for a retry</p>'
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>"
        f'<div class="meta">broker {_e(report.broker)} · results {_e(report.result_backend)} · worker {_e(report.worker)}</div>'
        f'<div class="summary {"ok" if ok else "bad"}">{_e(summary)}</div>{index}{legend}'
        + "\n".join(_scenario(r) for r in report.results)
        + "</body></html>\n"
    )


def write_html(path: Path, report: RunReport) -> None:
    path.write_text(html_report(report), encoding="utf-8")


_CELL = {True: ("passed", "✔"), False: ("failed", "✘"), None: ("skipped", "-")}


def matrix_html(matrix: Matrix, title: str = "celery_sim fidelity matrix") -> str:
    """The matrix as one page: a row per scenario, a column per broker, each cell its verdict
    (✔ as expected, ✘ an undeclared difference, ≠ a declared difference, - skipped or not run)
    with the declared reason or the diagnosis on hover and under the table."""
    reachable = [c for c in matrix.columns if c.unreachable is None]
    head = "".join(f"<th>{_e(c.label)}</th>" for c in reachable)
    rows = []
    for item in matrix.scenarios:
        cells = []
        for column in reachable:
            result = matrix.result(column, item.name)
            agrees = matrix.agrees(item, column)
            kind, mark = _CELL[agrees] if result is not None and result.status is not Status.SKIPPED else _CELL[None]
            if agrees is False:
                kind, mark = "failed", "✘"
            why = item.differs_on.get(column.kind) or item.skip_on.get(column.kind) or (result and result.diagnosis)
            if agrees and column.kind in item.differs_on:
                mark = "≠"
            status = result.status.value if result else "not run"
            cells.append(f'<td class="{kind}" title="{_e(why or status)}">{mark} {_e(status)}</td>')
        rows.append(f"<tr><td>{_e(item.name)}</td>{''.join(cells)}</tr>")
    undeclared = matrix.undeclared()
    gone = [c for c in matrix.columns if c.unreachable is not None]
    summary = (
        "SAME VERDICTS on every broker" if matrix.ok else f"{len(undeclared)} undeclared difference(s)"
    ) + f" · {len(matrix.scenarios)} scenario(s) by {len(reachable)} broker(s)"
    notes = "".join(f'<div class="diag">{_e(u)}</div>' for u in undeclared)
    notes += "".join(f'<div class="note">left out: {_e(c.label)}: {_e(c.unreachable)}</div>' for c in gone)
    declared = "".join(
        f'<div class="diff">≠ {_e(item.name)} on {_e(kind)}: {_e(why)}</div>'
        for item in matrix.scenarios
        for kind, why in {**item.skip_on, **item.differs_on}.items()
        if any(c.kind == kind for c in reachable)
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>"
        f'<div class="summary {"ok" if matrix.ok else "bad"}">{_e(summary)}</div>{notes}'
        f'<table id="matrix"><tr><th>scenario</th>{head}</tr>{"".join(rows)}</table>'
        f"<h2>Declared differences and skips</h2>{declared or '<p>none</p>'}</body></html>\n"
    )


def write_matrix_html(path: Path, matrix: Matrix) -> None:
    path.write_text(matrix_html(matrix), encoding="utf-8")
