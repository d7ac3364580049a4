"""The live monitor's picture of a :class:`~celery_sim.tools.monitor.Snapshot`: three tables (rich)."""

from __future__ import annotations

from dataclasses import replace

from rich import box
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from celery_sim.core.brokers import mask_url
from celery_sim.tools.monitor import Snapshot

__all__ = ["render_snapshot"]

_STATE_STYLE = {
    "SUCCESS": "green",
    "FAILURE": "red",
    "REVOKED": "red",
    "REJECTED": "red",
    "RETRY": "yellow",
    "STARTED": "cyan",
    "PROGRESS": "cyan",
    "RECEIVED": "blue",
    "PENDING": "dim",
    "RESERVED": "blue",
    "SCHEDULED": "blue",
}


def render_snapshot(snapshot: Snapshot, *, footer: str = "", height: int | None = None) -> RenderableType:
    """Workers, queues and tasks, each a table; notes and ``footer`` under them.

    ``height``: the lines there are (a terminal's); the tasks table shows as many as fit.
    """
    if height is not None:
        # Each table takes its rows plus 5 lines (title, blank, header, rule, blank); the title,
        # notes and footer one line each.
        fixed = 1 + (len(snapshot.workers) + 5) + (len(snapshot.queues) + 5) + 5 + len(snapshot.notes) + 2
        snapshot = replace(snapshot, tasks=snapshot.tasks[: max(1, height - fixed)])
    workers = Table(title="Workers", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("worker", "pool", "slots", "active", "processed"):
        workers.add_column(column, justify="left" if column in ("worker", "pool") else "right")
    for w in snapshot.workers:
        workers.add_row(
            escape(w.hostname), w.pool, "?" if w.concurrency is None else str(w.concurrency), str(w.active),
            str(w.processed),
        )  # fmt: skip
    queues = Table(title="Queues", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("queue", "waiting", "consumers"):
        queues.add_column(column, justify="right" if column == "waiting" else "left")
    for q in snapshot.queues:
        waiting = "-" if q.length is None else str(q.length)
        consumers = ", ".join(q.consumers) or "[bold red]nobody[/]"
        queues.add_row(escape(q.name), waiting, consumers if not q.consumers else escape(consumers))
    tasks = Table(title="Tasks (most recent first)", title_justify="left", box=box.SIMPLE_HEAD)
    tasks.add_column("task", min_width=16, no_wrap=True, overflow="ellipsis")
    tasks.add_column("id", no_wrap=True, min_width=8)
    tasks.add_column("state", no_wrap=True, min_width=8)
    tasks.add_column("progress", overflow="fold")
    tasks.add_column("runtime", justify="right", no_wrap=True)
    tasks.add_column("retry", justify="right", no_wrap=True)
    tasks.add_column("worker", no_wrap=True, overflow="ellipsis")
    # Node names on one machine share "@host": the tasks table shows the part before it.
    hosts = {t.worker.partition("@")[2] for t in snapshot.tasks if t.worker}
    short = len(hosts) <= 1
    for t in snapshot.tasks:
        style = _STATE_STYLE.get(t.state, "magenta")
        runtime = "" if t.runtime_s is None else f"{t.runtime_s:.2f}s"
        tasks.add_row(
            escape(t.name), t.task_id[:8], f"[{style}]{escape(t.state)}[/]", escape(t.progress), runtime,
            str(t.retries or ""), escape(t.worker.partition("@")[0] if short else t.worker),
        )  # fmt: skip
    parts: list[RenderableType] = [Text(mask_url(snapshot.title), style="bold"), workers, queues, tasks]
    parts += [Text(f"note: {mask_url(n)}", style="yellow") for n in snapshot.notes]
    if footer:
        parts.append(Text(footer, style="dim"))
    return Group(*parts)
