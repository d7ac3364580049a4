"""The catalog as a table: each scenario's name and what it shows (``python -m celery_sim list``)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["render_catalog"]


def render_catalog(console: Console, index: Sequence[tuple[str, str]]) -> None:
    """``index``: ``(name, summary)`` of each scenario, in catalog order."""
    table = Table(title="Scenario catalog")
    table.add_column("scenario", style="bold", no_wrap=True)
    table.add_column("what it shows")
    for name, summary in index:
        table.add_row(name, escape(summary))
    console.print(table)
    families = list(dict.fromkeys(name.split(".", 1)[0] for name, _ in index))
    console.print(f"{len(index)} scenarios in families: {', '.join(families)}")
