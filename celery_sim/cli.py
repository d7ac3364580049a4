"""The command line: parse, validate, run, render, exit code. Nothing else lives here."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.logging import RichHandler

from .brokers import BROKERS, URL_SCHEMES, mask_url, resolve_broker
from .catalog import default_config, load_catalog
from .errors import UsageError
from .harness import Harness
from .report import LiveReporter, render_catalog, render_report, render_timeline, write_json
from .runner import Runner

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "cli", "main"]

EXIT_OK = 0  # every scenario passed (or was skipped with a reason)
EXIT_FAILED = 1  # a check failed, or a scenario timed out or errored
EXIT_USAGE = 2  # bad arguments: unknown scenario or broker, malformed value
EXIT_INTERRUPTED = 130  # Ctrl-C

BROKER_HELP = (
    f"Broker: {', '.join(BROKERS)} (embedded, nothing to install; default memory), "
    f"or a URL ({', '.join(s + '://' for s in URL_SCHEMES[::2])}...)."
)


def _setup_logging(verbose: int) -> None:
    root = logging.getLogger()
    root.handlers[:] = []
    if verbose:
        root.addHandler(RichHandler(console=Console(stderr=True), show_path=False))
        root.setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)
    else:
        # Scenarios make tasks fail on purpose; Celery logs those as errors. Keep them out of
        # the report unless asked for (-v).
        root.addHandler(logging.NullHandler())
        root.setLevel(logging.CRITICAL)


def _positive(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise click.BadParameter(f"{value:g} is not a positive number of seconds (e.g. --{param.name} 10)")
    return value


def _json_path(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if not path.parent.is_dir():
        raise click.BadParameter(f"directory {str(path.parent)!r} does not exist; create it or choose another path")
    return path


def run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    @click.option("--broker", default="memory", show_default=True, metavar="NAME|URL", help=BROKER_HELP)
    @click.option(
        "--timeout",
        type=float,
        callback=_positive,
        metavar="SECONDS",
        help="Deadline per scenario, overriding each scenario's own (default 10 s).",
    )
    @click.option(
        "--run-timeout",
        type=float,
        callback=_positive,
        default=600.0,
        show_default=True,
        metavar="SECONDS",
        help="Deadline for the whole run; scenarios not started by then are reported as skipped.",
    )
    @click.option(
        "--concurrency",
        type=click.IntRange(min=1, max=64),
        default=4,
        show_default=True,
        help="Threads of the main embedded worker.",
    )
    @click.option(
        "--json",
        "json_path",
        callback=_json_path,
        metavar="PATH",
        help="Also write the results as JSON to PATH (keys: broker, scenarios, summary).",
    )
    @click.option(
        "--timeline",
        "show_timeline",
        is_flag=True,
        help="After the table, draw each scenario's tasks on a time axis (queued, running).",
    )
    @click.option("-v", "--verbose", count=True, help="Show Celery's log (-v warnings, -vv debug) on stderr.")
    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        return fn(**kwargs)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="celery-sim")
def cli() -> None:
    """Real Celery, runnable and provable in one command.

    Starts real Celery with an embedded broker and worker, runs scenarios from the catalog, and
    ends with a table of verified checks (expected vs observed). Exit status: 0 all passed,
    1 a check failed or a scenario timed out or errored, 2 bad arguments, 130 interrupted.
    """


@cli.command()
@run_options
def complete(**options: Any) -> None:
    """Run every scenario in the catalog."""
    _execute([], **options)


@cli.command("run")
@click.argument("names", nargs=-1, required=True)
@run_options
def run_command(names: Sequence[str], **options: Any) -> None:
    """Run the scenarios or families NAMES (e.g. `calling`, `routing.unconsumed_queue`)."""
    _execute(list(names), **options)


@cli.command("list")
def list_command() -> None:
    """List the scenarios in the catalog."""
    render_catalog(Console(), load_catalog())


def _fail_usage(message: str) -> None:
    click.echo(f"Error: {mask_url(message)}", err=True)
    sys.exit(EXIT_USAGE)


def _execute(
    selectors: list[str],
    *,
    broker: str,
    timeout: float | None,
    run_timeout: float,
    concurrency: int,
    json_path: Path | None,
    show_timeline: bool,
    verbose: int,
) -> None:
    _setup_logging(verbose)
    registry = load_catalog()
    try:
        scenarios = registry.select(selectors) if selectors else registry.all()
        resolve_broker(broker).preflight()
    except UsageError as exc:
        _fail_usage(str(exc))
    config = default_config(broker=broker, concurrency=concurrency)
    console = Console(highlight=False)
    reporter = LiveReporter(console)
    runner = Runner(lambda: Harness(config), reporter, timeout=timeout, run_timeout=run_timeout)
    try:
        report = runner.run(scenarios)
    except KeyboardInterrupt:
        reporter.close()
        console.print("[yellow]Interrupted while stopping.[/]")
        sys.exit(EXIT_INTERRUPTED)
    finally:
        reporter.close()
    render_report(console, report)
    if show_timeline:
        for result in report.results:
            render_timeline(console, result)
    if json_path is not None:
        write_json(json_path, report)
        console.print(f"JSON written to {json_path}")
    if report.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)


def main() -> None:
    cli(prog_name="celery-sim")
