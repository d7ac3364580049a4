"""The command line: parse, validate, run, render, exit code. Nothing else lives here."""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from celery_sim.core.brokers import (
    BROKERS,
    DEFAULT_REDIS_URL,
    URL_SCHEMES,
    UrlBroker,
    mask_url,
    resolve_broker,
    validate_result_backend,
)
from celery_sim.core.installed import check_installed
from celery_sim.core.workers import WORKER_KINDS
from celery_sim.errors import UsageError

if TYPE_CHECKING:
    from celery_sim.scenarios.matrix import Column
    from celery_sim.scenarios.runner import RunReport
    from celery_sim.scenarios.scenario import Scenario

# Celery, rich and the catalog are imported by the commands that use them: `--help` and bad
# arguments answer without importing Celery.

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "cli", "main"]

EXIT_OK = 0  # every scenario passed (or was skipped with a reason)
EXIT_FAILED = 1  # a check failed, or a scenario timed out or errored
EXIT_USAGE = 2  # bad arguments: unknown scenario or broker, malformed value
EXIT_INTERRUPTED = 130  # Ctrl-C

#: The run id of --worker external when none is given.
EXTERNAL_RUN_ID = "shared"

BROKER_HELP = (
    f"Broker: {', '.join(BROKERS)} (embedded, nothing to install; default memory), "
    f"or a URL ({', '.join(s + '://' for s in URL_SCHEMES[::2])}...)."
)


def _setup_logging(verbose: int) -> None:
    import logging

    from rich.console import Console
    from rich.logging import RichHandler

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


def _run_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", value):
        raise click.BadParameter(f"{value!r}: use 1 to 32 letters, digits, '-' or '_' (it becomes part of queue names)")
    return value


def _json_path(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if not path.parent.is_dir():
        raise click.BadParameter(f"directory {str(path.parent)!r} does not exist; create it or choose another path")
    return path


def run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    @click.option(
        "--app",
        "app_path",
        metavar="MODULE:ATTR",
        help="Run your own app (as for `celery -A`) with your scenarios (--scenarios) instead of the catalog.",
    )
    @click.option(
        "--scenarios",
        "scenarios_module",
        metavar="MODULE",
        help="A module of yours registering scenarios with @celery_sim.scenario (needs --app).",
    )
    @click.option("--broker", default="memory", show_default=True, metavar="NAME|URL", help=BROKER_HELP)
    @click.option(
        "--real-broker",
        metavar="URL",
        help="Run on a real broker (redis://..., amqp://...); the same as --broker URL.",
    )
    @click.option(
        "--result-backend",
        metavar="URL",
        help="Result backend with a real broker: redis://, rpc://, db+sqlite:///PATH... "
        "(default: the broker itself for Redis, redis://127.0.0.1:6379/0 for RabbitMQ).",
    )
    @click.option(
        "--worker",
        type=click.Choice(WORKER_KINDS),
        default="thread",
        show_default=True,
        help="Main worker: an embedded thread, a real `celery worker` process (prefork) started and reaped "
        "here, or workers already running anywhere for --run-id (see `worker-command`).",
    )
    @click.option(
        "--run-id",
        callback=_run_id,
        metavar="ID",
        help="Name this run's namespace (queues csim-ID.*); needed by --worker external (default there: shared).",
    )
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
        help="Pool size of the main worker: threads, or processes with --worker process.",
    )
    @click.option(
        "--json",
        "json_path",
        callback=_json_path,
        metavar="PATH",
        help="Also write the results as JSON to PATH (keys: broker, scenarios, summary).",
    )
    @click.option(
        "--junit",
        "junit_path",
        callback=_json_path,
        metavar="PATH",
        help="Also write JUnit XML to PATH: one testcase per check (classname = scenario), for CI systems.",
    )
    @click.option(
        "--html",
        "html_path",
        callback=_json_path,
        metavar="PATH",
        help="Also write one self-contained HTML page to PATH: every scenario, check and diagnosis, "
        "and a timeline picture of each scenario's tasks.",
    )
    @click.option(
        "--monitor",
        "monitor",
        is_flag=True,
        help="Show the run's workers, queues and tasks (state, progress, runtime, retries) live while it runs.",
    )
    @click.option(
        "--timeline",
        "show_timeline",
        is_flag=True,
        help="After the table, draw each scenario's tasks on a time axis (queued, running).",
    )
    @click.option(
        "--checks",
        "checks",
        type=click.Choice(["failed", "all"]),
        default="failed",
        show_default=True,
        help="At the end, show the failing checks of each scenario that did not pass (failed), "
        "or the table of every check (all; also with -v).",
    )
    @click.option(
        "-v", "--verbose", count=True, help="Show Celery's log (-v warnings, -vv debug) on stderr, and every check."
    )
    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        return fn(**kwargs)

    return wrapper


def message_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options of one message and its wait (``call``, ``send``)."""
    options = [
        click.option("--args", "args_json", metavar="JSON", help="Positional arguments, a JSON array: '[2, 3]'."),
        click.option("--kwargs", "kwargs_json", metavar="JSON", help="Keyword arguments, a JSON object: '{\"x\": 1}'."),
        click.option("--queue", metavar="NAME", help="Send to this queue instead of the task's route."),
        click.option(
            "--wait",
            type=float,
            callback=_positive,
            default=10.0,
            show_default=True,
            metavar="SECONDS",
            help="How long to wait for the task's end before printing the diagnosis.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


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
@click.argument("names", nargs=-1)
@run_options
def run_command(names: Sequence[str], **options: Any) -> None:
    """Run the scenarios or families NAMES (e.g. `calling`, `routing.unconsumed_queue`)."""
    if not names:
        _fail_usage(
            "name at least one scenario or family, e.g. `run calling routing.unconsumed_queue`; "
            "`python -m celery_sim list` shows them all (or run them all with `complete`)"
        )
    _execute(list(names), **options)


@cli.command("call")
@click.argument("task")
@click.option("--app", "app_path", required=True, metavar="MODULE:ATTR", help="Your Celery app, as for `celery -A`.")
@message_options
@click.option(
    "--time-scale",
    type=float,
    default=1.0,
    show_default=True,
    metavar="S",
    help="Multiply countdowns, retries' delays and expiries by S (0.001: a 60 s retry takes 60 ms).",
)
@click.option("--broker", default="memory", show_default=True, metavar="NAME|URL", help=BROKER_HELP)
@click.option("--real-broker", metavar="URL", help="Run on a real broker (redis://..., amqp://...).")
@click.option("--result-backend", metavar="URL", help="Result backend with a real broker (as for `complete`).")
@click.option("-v", "--verbose", count=True, help="Show Celery's log on stderr.")
def call_command(
    task: str,
    app_path: str,
    args_json: str | None,
    kwargs_json: str | None,
    queue: str | None,
    wait: float,
    time_scale: float,
    broker: str,
    real_broker: str | None,
    result_backend: str | None,
    verbose: int,
) -> None:
    """Run TASK of your app (`--app module:app`) on a real worker and print its result and timeline.

    If it does not end within --wait seconds, prints why (the diagnosis) and exits 1.
    """
    from rich.console import Console
    from rich.markup import escape

    from celery_sim.core.harness import Harness
    from celery_sim.reports.console import render_call
    from celery_sim.tools.call import call_task, import_app, parse_json_option, resolve_task_name

    _setup_logging(verbose)
    try:
        args = parse_json_option("--args", args_json, list)
        kwargs = parse_json_option("--kwargs", kwargs_json, dict)
        if not 0 < time_scale <= 1:
            raise UsageError(f"--time-scale {time_scale:g} must be in (0, 1]: 0.001 makes a 1 s delay take 1 ms")
        broker = _choose_broker(broker, real_broker, result_backend, "thread")
        check_installed()
        app = import_app(app_path)
        name = resolve_task_name(app, task)
        resolve_broker(broker, result_backend).preflight()
    except UsageError as exc:
        _fail_usage(str(exc))
    console = Console(highlight=False)
    with Harness(app=app, broker=broker, result_backend=result_backend, time_scale=time_scale) as harness:
        console.print(
            f"{escape(name)} of app {escape(app.main or '?')} on {escape(harness.broker_label)}, worker consuming "
            + ", ".join(harness.ns.logical(q) for q in harness.main_queues)
        )
        outcome = call_task(harness, name, args, kwargs, queue=queue, wait=wait)
        render_call(console, outcome, harness.ns.logical)
    sys.exit(EXIT_OK if outcome.ok else EXIT_FAILED)


@cli.command("send")
@click.argument("task", metavar="hello|health|psi|NAME")
@message_options
@click.option("--broker", default="memory", show_default=True, metavar="NAME|URL", help=BROKER_HELP)
@click.option("--real-broker", metavar="URL", help="Send on a real broker (redis://..., amqp://...).")
@click.option("--result-backend", metavar="URL", help="Result backend with a real broker (default: Redis).")
@click.option(
    "--external",
    is_flag=True,
    help="With --real-broker: send to the app's own queues, for your `celery -A demos.sending worker "
    "-Q secretflow_queue,default,web_queue` (no embedded worker).",
)
@click.option("-v", "--verbose", count=True, help="Show Celery's log on stderr.")
def send_command(
    task: str,
    args_json: str | None,
    kwargs_json: str | None,
    queue: str | None,
    wait: float,
    broker: str,
    real_broker: str | None,
    result_backend: str | None,
    external: bool,
    verbose: int,
) -> None:
    """Send a task of the sending guide's app (demos.sending) by name, as its send_task.py does.

    hello, health and psi are the guide's Makefile targets (psi: its example PSI job unless --args
    gives one); any other NAME is sent as it is. Without --external the embedded worker of
    demos.sending runs it; a task nobody consumes ends in the diagnosis after --wait, exit 1.
    """
    from rich.console import Console
    from rich.markup import escape

    from celery_sim.reports.console import render_call
    from celery_sim.tools.call import parse_json_option
    from celery_sim.tools.send import APP_PATH, prepare, send_external, send_on_harness

    _setup_logging(verbose)
    try:
        args = parse_json_option("--args", args_json, list)
        kwargs = parse_json_option("--kwargs", kwargs_json, dict)
        broker = _choose_broker(broker, real_broker, result_backend, "thread")
        if external and real_broker is None:
            raise UsageError("--external needs --real-broker URL: the workers it sends to run elsewhere")
        check_installed()
        sending = prepare(task, args, kwargs)
        resolve_broker(broker, result_backend).preflight()
    except UsageError as exc:
        _fail_usage(str(exc))
    console = Console(highlight=False)
    if external:
        assert real_broker is not None
        backend = UrlBroker(real_broker, result_backend).result_backend  # as for complete: Redis by default
        console.print(f"{escape(sending.name)} by name to {escape(mask_url(real_broker))}, for the workers there")
        outcome = send_external(real_broker, backend, sending, queue=queue, wait=wait)
        render_call(console, outcome, str)
        sys.exit(EXIT_OK if outcome.ok else EXIT_FAILED)
    from celery_sim.core.harness import Harness

    with Harness(app=APP_PATH, broker=broker, result_backend=result_backend) as harness:
        console.print(
            f"{escape(sending.name)} by name on {escape(harness.broker_label)}, worker of demos.sending consuming "
            + ", ".join(harness.ns.logical(q) for q in harness.main_queues)
        )
        outcome = send_on_harness(harness, sending, queue=queue, wait=wait)
        render_call(console, outcome, harness.ns.logical)
    sys.exit(EXIT_OK if outcome.ok else EXIT_FAILED)


@cli.command("serve")
@click.argument("system", type=click.Choice(["ai_runner"]))
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", type=int, default=8000, show_default=True, help="The port (0: any free one, printed).")
@click.option("--broker", default="memory", show_default=True, metavar="NAME|URL", help=BROKER_HELP)
@click.option("--real-broker", metavar="URL", help="Run the worker on a real broker (redis://..., amqp://...).")
@click.option("--result-backend", metavar="URL", help="Result backend with a real broker (default: Redis).")
@click.option(
    "--database-url",
    default="sqlite:///ai_runner.db",
    show_default=True,
    metavar="URL",
    help="Where the rows live: a SQLite file, or postgresql+psycopg://user@host:5432/db.",
)
@click.option(
    "--duration", type=float, callback=_positive, metavar="S", help="Stop after S seconds (default: at Ctrl-C)."
)
@click.option("-v", "--verbose", count=True, help="Show Celery's log on stderr.")
def serve_command(
    system: str,
    host: str,
    port: int,
    broker: str,
    real_broker: str | None,
    result_backend: str | None,
    database_url: str,
    duration: float | None,
    verbose: int,
) -> None:
    """Serve a guide's system: ai_runner, the Async AI Task Runner (FastAPI + SQLAlchemy + Celery).

    Its API (POST /tasks, GET /tasks/{id}, docs at /docs) and its worker run in this process,
    on the embedded broker unless --real-broker says otherwise. Ctrl-C (or SIGTERM) stops both.
    """
    from rich.console import Console
    from rich.markup import escape

    from celery_sim.tools.serve import check_address, check_database, serve

    _setup_logging(verbose)
    try:
        broker = _choose_broker(broker, real_broker, result_backend, "thread")
        check_installed()
        check_address(host, port)
        resolve_broker(broker, result_backend).preflight()
        check_database(database_url)
    except UsageError as exc:
        _fail_usage(str(exc))
    console = Console(highlight=False, soft_wrap=True)  # the URLs and the curl line stay whole, to paste

    def ready(url: str, harness: Any) -> None:
        from sqlalchemy.engine import make_url

        queues = ", ".join(harness.ns.logical(q) for q in harness.main_queues)
        console.print(f"{system} serving on {url} (API docs: {url}/docs)")
        console.print(
            f"worker on {escape(harness.broker_label)} consuming {queues}; rows in "
            f"{escape(make_url(database_url).render_as_string(hide_password=True))}"
        )
        console.print(
            f"try: curl -s -X POST {url}/tasks -H 'content-type: application/json' -d '{{\"prompt\": \"hello\"}}'"
        )
        console.print("Ctrl-C to stop", style="dim")

    serve(
        system,
        host=host,
        port=port,
        broker=broker,
        result_backend=result_backend,
        database_url=database_url,
        duration=duration,
        on_ready=ready,
    )
    console.print("stopped")


@cli.command("doctor")
@click.argument("task_id", required=False)
@click.option(
    "--task", "task_name", metavar="NAME", help="The task's name (checks it is registered and its queue consumed)."
)
@click.option("--app", "app_path", metavar="MODULE:ATTR", help="Your app: its routes and result backend (and broker).")
@click.option("--real-broker", metavar="URL", help="The broker to examine (default: your app's).")
@click.option(
    "--result-backend", metavar="URL", help="The result backend to read (default: your app's, or as for `complete`)."
)
def doctor_command(
    task_id: str | None,
    task_name: str | None,
    app_path: str | None,
    real_broker: str | None,
    result_backend: str | None,
) -> None:
    """Why is a task stuck in PENDING? Names the first cause found, its evidence and the fix.

    Checks, in order: no worker at all; the task registered on no live worker; its queue consumed
    by no worker; revoked, scheduled (ETA), running, or reserved behind busy slots; done or
    expired; no result backend; ignore_result; the workers' result backend or serializer not the
    client's; else what a PENDING that no worker knows leaves. Reads only: it never consumes,
    purges or acknowledges a message. Exit 0 when the task is fine (done or running), 1 with a cause.
    """
    from celery_sim.tools.doctor import examine

    _setup_logging(0)
    try:
        if task_id is None and task_name is None:
            raise UsageError("give a TASK_ID, or --task NAME (or both), e.g. `doctor --real-broker URL 5f1c...`")
        if app_path is None and real_broker is None:
            raise UsageError("give --real-broker URL (or --app module:attr, whose broker is used)")
        app = _deployment_app(app_path, real_broker, result_backend, "the doctor examines")
    except UsageError as exc:
        _fail_usage(str(exc))
    finding = examine(app, task_id, task_name)
    click.echo(f"{'OK' if finding.ok else 'CAUSE'} [{finding.kind}]: {mask_url(finding.cause)}")
    for line in finding.evidence:
        click.echo(f"  - {mask_url(line)}")
    if finding.fix:
        click.echo(f"FIX: {finding.fix}")
    sys.exit(EXIT_OK if finding.ok else EXIT_FAILED)


def _deployment_app(app_path: str | None, real_broker: str | None, result_backend: str | None, what: str) -> Any:
    """The app a tool reads a real deployment with: the user's (``--app``) or a bare one, on
    ``--real-broker`` and ``--result-backend`` when given; raises UsageError for bad input or
    an unreachable broker."""
    from celery import Celery

    from celery_sim.core.brokers import UrlBroker

    if app_path is not None:
        from celery_sim.tools.call import import_app

        app = import_app(app_path)
    else:
        app = Celery("celery_sim-tool", set_as_current=False)
    if real_broker is not None:
        _choose_broker("memory", real_broker, result_backend, "thread")
        app.conf.update(broker_url=real_broker, result_backend=result_backend or UrlBroker(real_broker).result_backend)
    elif result_backend is not None:
        app.conf.update(result_backend=result_backend)
    broker_url = str(app.conf.broker_url or "")
    if "://" not in broker_url or broker_url.startswith("memory://"):
        raise UsageError(f"broker {mask_url(broker_url) or 'none'!r}: {what} a real broker; give --real-broker URL")
    check_installed()
    resolve_broker(broker_url, str(app.conf.result_backend or "") or None).preflight()
    return app


@cli.command("monitor")
@click.option("--real-broker", metavar="URL", help="Watch the workers on this broker (default: the embedded demo).")
@click.option("--result-backend", metavar="URL", help="Where tasks' progress is read (default: your app's, or Redis).")
@click.option("--app", "app_path", metavar="MODULE:ATTR", help="Your app: its broker, result backend and queues.")
@click.option("--once", is_flag=True, help="Print one snapshot and exit (for scripts and tests).")
@click.option(
    "--interval", type=float, default=1.0, show_default=True, metavar="S",
    help="Seconds between refreshes (at least 0.2); with --once, how long to collect events first.",
)  # fmt: skip
@click.option(
    "--enable-events", is_flag=True,
    help="Ask the workers to send task events (celery control enable_events); undone on exit.",
)  # fmt: skip
@click.option("--duration", type=float, metavar="S", help="Stop after S seconds (default: at Ctrl-C).")
def monitor_command(
    real_broker: str | None,
    result_backend: str | None,
    app_path: str | None,
    once: bool,
    interval: float,
    enable_events: bool,
    duration: float | None,
) -> None:
    """A live view of workers, queues and tasks (state, progress, runtime, retries).

    With --real-broker or --app: any deployment, seen by ping/inspect and Celery's task events
    (workers started with -E, or --enable-events), plus each running task's progress from the
    result backend (update_state meta, which no event carries). Without: the embedded broker and
    worker running a small demo load. Refreshed at a bounded rate; Ctrl-C exits cleanly.
    """
    from celery_sim.tools.watch import watch_demo, watch_deployment

    _setup_logging(0)
    try:
        if interval <= 0 or (duration is not None and duration <= 0):
            raise UsageError("--interval and --duration take a number of seconds above 0, e.g. --interval 0.5")
        app = None
        if real_broker is not None or app_path is not None:
            app = _deployment_app(app_path, real_broker, result_backend, "the monitor watches")
        elif result_backend is not None or enable_events:
            raise UsageError("--result-backend and --enable-events go with --real-broker URL or --app module:attr")
        else:
            check_installed()
    except UsageError as exc:
        _fail_usage(str(exc))
    if app is None:
        watch_demo(once=once, interval=interval, duration=duration)
    else:
        watch_deployment(app, once=once, interval=interval, duration=duration, enable_events=enable_events)
    sys.exit(EXIT_OK)


@cli.command("list")
def list_command() -> None:
    """List the scenarios in the catalog."""
    from rich.console import Console

    from celery_sim.reports.catalog_view import render_catalog
    from celery_sim.scenarios.index import catalog_index

    index = catalog_index()  # read from the source: no Celery imported
    if index is None:
        from celery_sim.scenarios.catalog import load_catalog

        index = [(item.name, item.summary) for item in load_catalog().all()]
    # Summaries are literal text (``module:attr`` is no emoji code), and plain: 6 ms less of rich.
    render_catalog(Console(emoji=False, highlight=False), index)


@cli.command("matrix")
@click.argument("names", nargs=-1)
@click.option("--redis-url", metavar="URL", help=f"The real Redis to include (default {DEFAULT_REDIS_URL}).")
@click.option(
    "--amqp-url", metavar="URL", help="The real RabbitMQ to include (default amqp://guest:***@127.0.0.1:5672//)."
)
@click.option(
    "--timeout",
    type=float,
    callback=_positive,
    metavar="SECONDS",
    help="Deadline per scenario, overriding each scenario's own.",
)
@click.option("--json", "json_path", callback=_json_path, metavar="PATH", help="Also write the matrix as JSON to PATH.")
@click.option(
    "--html", "html_path", callback=_json_path, metavar="PATH", help="Also write the matrix as one HTML page to PATH."
)
@click.option("-v", "--verbose", count=True, help="Show Celery's log (-v warnings, -vv debug) on stderr.")
def matrix_command(
    names: Sequence[str],
    redis_url: str | None,
    amqp_url: str | None,
    timeout: float | None,
    json_path: Path | None,
    html_path: Path | None,
    verbose: int,
) -> None:
    """Run the catalog (or NAMES) on every reachable broker: memory, fakeredis, Redis, RabbitMQ.

    Prints one row per scenario and one column per broker. Exit status 0 when every verdict
    agrees (each scenario passes everywhere, but for declared differences), 1 otherwise.
    Unreachable real brokers are left out, with the reason.
    """
    from rich.console import Console

    from celery_sim.core.harness import Harness
    from celery_sim.reports.console import LiveReporter, render_matrix, write_json
    from celery_sim.scenarios.catalog import default_config, load_catalog
    from celery_sim.scenarios.matrix import Matrix, matrix_brokers
    from celery_sim.scenarios.runner import Runner

    _setup_logging(verbose)
    registry = load_catalog()
    try:
        scenarios = registry.select(list(names)) if names else registry.all()
        for url in (redis_url, amqp_url):
            if url is not None:
                resolve_broker(url)  # a malformed URL is a usage error, not an unreachable broker
    except UsageError as exc:
        _fail_usage(str(exc))
    console = Console(highlight=False)
    columns = matrix_brokers(redis_url, amqp_url)

    def run_one(column: Column, chosen: Sequence[Scenario]) -> RunReport:
        config = default_config(broker=column.broker)
        reporter = LiveReporter(console)
        try:
            return Runner(lambda: Harness(config), reporter, timeout=timeout, lanes=True).run(chosen)
        finally:
            reporter.close()

    try:
        result = Matrix.run(columns, scenarios, run_one)
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted.[/]")
        sys.exit(EXIT_INTERRUPTED)
    render_matrix(console, result)
    if json_path is not None:
        write_json(json_path, result)
        console.print(f"JSON written to {json_path}")
    if html_path is not None:
        from celery_sim.reports.html import write_matrix_html

        write_matrix_html(html_path, result)
        console.print(f"HTML matrix written to {html_path}")
    sys.exit(EXIT_OK if result.ok else EXIT_FAILED)


@cli.command("worker-command")
@click.option("--real-broker", required=True, metavar="URL", help="The broker the run will use.")
@click.option("--result-backend", metavar="URL", help="As for `complete` (default: as there).")
@click.option("--run-id", callback=_run_id, default=EXTERNAL_RUN_ID, show_default=True, metavar="ID")
@click.option(
    "--app", "app_path", metavar="MODULE:ATTR", help="Your app (with `--scenarios` runs); default: the catalog."
)
def worker_command(real_broker: str, result_backend: str | None, run_id: str, app_path: str | None) -> None:
    """Print the command that starts a worker for `complete --worker external` (on any machine).

    Start as many as you like, anywhere that reaches the broker, then run
    `python -m celery_sim complete --real-broker URL --worker external --run-id ID`.
    Passwords are shown masked: put yours back in.
    """
    from celery_sim.core.adopt import routed_queues
    from celery_sim.core.appfactory import configure_path
    from celery_sim.core.namespace import Namespace
    from celery_sim.core.workers.process import external_worker_command
    from celery_sim.scenarios.catalog import default_config

    try:
        _choose_broker("memory", real_broker, result_backend, "external")
        if app_path is not None:
            from celery_sim.tools.call import import_app

            queues = routed_queues(import_app(app_path))
            command = external_worker_command(real_broker, Namespace(run_id), queues, result_backend, app_path=app_path)
        else:
            config = default_config()
            assert config.configure is not None and config.queues is not None
            command = external_worker_command(
                real_broker,
                Namespace(run_id),
                config.queues,
                result_backend,
                configure_path=configure_path(config.configure),
            )
    except UsageError as exc:
        _fail_usage(str(exc))
    click.echo(command)


_DURATION = re.compile(r"(?P<n>\d+(?:\.\d+)?)(?P<unit>[smhd]?)")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    match = _DURATION.fullmatch(value.strip())
    if not match:
        raise click.BadParameter(f"{value!r} is not a duration; use e.g. 30s, 10m, 2h, 1d (or 0 for any age)")
    return float(match["n"]) * _UNIT_S[match["unit"]]


@cli.command("clean")
@click.option("--real-broker", required=True, metavar="URL", help="The Redis or RabbitMQ to clean.")
@click.option(
    "--result-backend",
    metavar="URL",
    help="The result backend runs used, cleaned too when it is Redis (default: as for `complete`).",
)
@click.option("--run-id", callback=_run_id, metavar="ID", help="Only this run's names (at any age).")
@click.option(
    "--older-than",
    callback=_duration,
    metavar="DURATION",
    help="Only runs whose every Redis key has been idle this long: 30s, 10m, 2h, 1d, 0 "
    "(default 10m; any age with --run-id). RabbitMQ keeps no age: there, runs with a consumer are kept.",
)
@click.option("--dry-run", is_flag=True, help="List what would be removed, remove nothing.")
def clean_command(
    real_broker: str, result_backend: str | None, run_id: str | None, older_than: float | None, dry_run: bool
) -> None:
    """Remove what killed runs left on a real broker: only celery_sim's own names (csim-ID.*).

    A run stopped normally leaves nothing; one killed (SIGKILL, a lost machine) can leave queues,
    exchanges, bindings and results. Lists each thing it removes.
    """
    from rich.console import Console
    from rich.markup import escape

    from celery_sim.core.cleanup import clean

    try:
        _choose_broker("memory", real_broker, result_backend, "thread")
        broker = resolve_broker(real_broker, result_backend)
        broker.preflight()
    except UsageError as exc:
        _fail_usage(str(exc))
    age = older_than if older_than is not None else (None if run_id else 600.0)
    console = Console(highlight=False)
    urls = [real_broker, str(getattr(broker, "result_backend", real_broker))]
    try:
        found = clean(urls, run_id=run_id, older_than=age, dry_run=dry_run)
    except UsageError as exc:
        _fail_usage(str(exc))
    for item in found:
        done = "would remove" if dry_run else "removed"
        console.print(f"{done} {item.kind} {escape(item.name)}  [dim](run {item.run_id}, {escape(item.where)})[/]")
    scope = f"run {run_id}" if run_id else f"runs idle for {age:g}s or more" if age else "every run not in use"
    console.print(f"{'Would remove' if dry_run else 'Removed'} {len(found)} item(s) of {scope}.")


@cli.command("bench")
@click.option(
    "--quick", is_flag=True, help="A short run (N = 100 and 1,000, up to 100 round trips, 3 s budget per figure)."
)
@click.option(
    "--setups",
    metavar="NAMES",
    help="Comma-separated set-ups (default: all): memory, fakeredis, redis, amqp, redis-prefork, amqp-prefork, celery-test-worker, "
    "celery-test-worker-tuned, dramatiq-stub.",
)
@click.option(
    "--cap",
    type=float,
    callback=_positive,
    default=240.0,
    show_default=True,
    metavar="SECONDS",
    help="Time cap per set-up; one that exceeds it is reported as hung.",
)
@click.option(
    "--json", "json_path", callback=_json_path, metavar="PATH", help="Also write the figures as JSON to PATH."
)
@click.option(
    "--scale", is_flag=True,
    help="Instead: tasks/s with 1, 2 and 4 `celery worker` processes on one queue, on the real Redis and RabbitMQ.",
)  # fmt: skip
@click.option(
    "--scale-n", type=int, default=1000, show_default=True, metavar="N", help="Tasks per --scale measure."
)  # fmt: skip
@click.option(
    "--rounds", type=click.IntRange(1, 20), default=None, metavar="R",
    help="Measure every set-up R times, interleaved; each figure is the median (default: 3, or 1 with --quick).",
)  # fmt: skip
def bench_command(
    quick: bool, setups: str | None, cap: float, json_path: Path | None, scale: bool, scale_n: int, rounds: int | None
) -> None:
    """Measure round trips through each set-up side by side, each in its own process.

    Ready, ready again (a second start in the same process), p50/p99 of one delay().get(), µs per
    task with N sent at once (N = 100, 1,000, 10,000), CPU while idle, stop, and memory per 1,000
    tasks; ratios against the default mode. Every set-up runs --rounds times, interleaved, and each
    figure is the median of its rounds. Set-ups that cannot run here (a broker down, Dramatiq not
    installed) are listed with the reason.
    """
    from rich.console import Console
    from rich.markup import escape

    from celery_sim.reports.console import render_bench, render_scale, write_json
    from celery_sim.tools.bench import SETUPS, BenchReport, run_bench

    if scale:
        from celery_sim.core.brokers import DEFAULT_AMQP_URL, DEFAULT_REDIS_URL
        from celery_sim.tools.scale import run_scale

        if scale_n < 1:
            _fail_usage(f"--scale-n {scale_n}: give a number of tasks of at least 1, e.g. --scale-n 1000")
        _setup_logging(0)
        console = Console(highlight=False)
        console.print(f"[bold]celery_sim bench --scale[/]: N = {scale_n:,} tasks per measure, 1, 2 and 4 workers")
        report = run_scale(
            [("redis", DEFAULT_REDIS_URL), ("amqp", DEFAULT_AMQP_URL)],
            [1, 2, 4],
            scale_n,
            lambda p: console.print(f"  {p.broker} x{p.workers}: " + ("done" if p.error is None else escape(p.error))),
        )
        render_scale(console, report)
        if json_path is not None:
            write_json(json_path, report)
            console.print(f"JSON written to {json_path}")
        return

    chosen = [name.strip() for name in setups.split(",")] if setups else list(SETUPS)
    unknown = [name for name in chosen if name not in SETUPS]
    if unknown:
        _fail_usage(f"unknown set-up(s) {', '.join(map(repr, unknown))}; choose from: {', '.join(SETUPS)}")
    sizes = [100, 1000] if quick else [100, 1000, 10000]
    samples, budget = (100, 3.0) if quick else (500, 20.0)
    rounds = rounds or (1 if quick else 3)
    console = Console(highlight=False)
    console.print(
        f"[bold]celery_sim bench[/]: {len(chosen)} set-up(s), N = {', '.join(f'{n:,}' for n in sizes)}, "
        f"{rounds} round(s) interleaved (each figure the median)"
    )

    def done(figures: Any, number: int) -> None:
        label = f"{figures.setup} (round {number}/{rounds})" if rounds > 1 else figures.setup
        console.print(f"  {label}: " + ("done" if figures.error is None else escape(figures.error)))

    found = run_bench(chosen, sizes, samples, budget, min(cap, 60.0) if quick else cap, done, rounds)
    render_bench(console, found, sizes)
    if json_path is not None:
        write_json(json_path, BenchReport(sizes, found))
        console.print(f"JSON written to {json_path}")


def _fail_usage(message: str) -> None:
    click.echo(f"Error: {mask_url(message)}", err=True)
    sys.exit(EXIT_USAGE)


def _choose_broker(broker: str, real_broker: str | None, result_backend: str | None, worker: str) -> str:
    """The broker to use, from --broker / --real-broker; raises UsageError on a contradiction."""
    if real_broker is not None:
        if broker != "memory":
            raise UsageError("give either --broker or --real-broker, not both")
        if "://" not in real_broker:
            raise UsageError(
                f"--real-broker takes a URL (e.g. redis://localhost:6379/0 or amqp://guest:guest@localhost:5672//), "
                f"not {real_broker!r}; for an embedded broker use --broker {real_broker}"
            )
        broker = real_broker
    chosen = resolve_broker(broker, result_backend)
    if result_backend is not None:
        if chosen.embedded:
            raise UsageError(
                "--result-backend needs a real broker (--real-broker URL); embedded brokers bring their own"
            )
        validate_result_backend(result_backend)
    if worker != "thread" and chosen.name == "memory":
        raise UsageError(
            f"--worker {worker} needs a broker other processes can reach; the memory broker lives in this "
            "process: use --broker fakeredis (embedded too) or --real-broker URL"
        )
    if worker == "external" and chosen.embedded:
        raise UsageError("--worker external needs --real-broker URL: workers elsewhere cannot reach an embedded broker")
    return broker


def _execute(
    selectors: list[str],
    *,
    broker: str,
    real_broker: str | None,
    result_backend: str | None,
    worker: str,
    run_id: str | None,
    timeout: float | None,
    run_timeout: float,
    concurrency: int,
    json_path: Path | None,
    junit_path: Path | None,
    html_path: Path | None,
    show_timeline: bool,
    checks: str,
    verbose: int,
    app_path: str | None,
    scenarios_module: str | None,
    monitor: bool = False,
) -> None:
    from rich.console import Console

    from celery_sim.core.harness import Harness, HarnessConfig
    from celery_sim.reports.console import LiveReporter, render_report, render_timeline, write_json
    from celery_sim.scenarios.catalog import default_config, load_catalog, load_scenarios
    from celery_sim.scenarios.runner import Runner

    _setup_logging(verbose)
    try:
        if (app_path is None) != (scenarios_module is None):
            raise UsageError(
                "--app and --scenarios go together: your app, and the module of scenarios to run on it "
                "(e.g. --app shop.celery_app:app --scenarios shop.scenarios)"
            )
        broker = _choose_broker(broker, real_broker, result_backend, worker)
        check_installed()
        if app_path is not None and scenarios_module is not None:
            from celery_sim.tools.call import import_app

            import_app(app_path)  # a clear error now, not one per scenario
            registry = load_scenarios(scenarios_module)
        else:
            registry = load_catalog()
        scenarios = registry.select(selectors) if selectors else registry.all()
        resolve_broker(broker, result_backend).preflight()
    except UsageError as exc:
        _fail_usage(str(exc))
    if worker == "external":
        run_id = run_id or EXTERNAL_RUN_ID
    options: dict[str, Any] = {
        "broker": broker,
        "result_backend": result_backend,
        "concurrency": concurrency,
        "worker": worker,
        "run_id": run_id,
    }
    config = HarnessConfig(app=app_path, **options) if app_path is not None else default_config(**options)
    console = Console(highlight=False)
    reporter: Any
    if monitor:
        from celery_sim.reports.live_monitor import MonitorReporter

        watching = MonitorReporter(console)
        reporter = watching
        runner = Runner(lambda: watching.watch(Harness(config)), reporter, timeout=timeout, run_timeout=run_timeout)
    else:
        reporter = LiveReporter(console)
        # Each lane needs a harness of its own, under a run id of its own: not for external workers
        # nor a fixed --run-id (one namespace), nor for the user's app (one harness per app at a time).
        # Nor on SQLite results: one file takes one writer at a time, so lanes side by side wait on
        # its lock (stores ~1 s late), and a caller polling a 30 ms state missed it.
        sqlite = (result_backend or "").startswith("db+sqlite:")
        lanes = worker != "external" and app_path is None and run_id is None and not sqlite
        runner = Runner(lambda: Harness(config), reporter, timeout=timeout, run_timeout=run_timeout, lanes=lanes)
    try:
        report = runner.run(scenarios)
    except KeyboardInterrupt:
        reporter.close()
        console.print("[yellow]Interrupted while stopping.[/]")
        sys.exit(EXIT_INTERRUPTED)
    finally:
        reporter.close()
    render_report(console, report, all_checks=checks == "all" or verbose > 0)
    if show_timeline:
        for result in report.results:
            render_timeline(console, result)
    if json_path is not None:
        write_json(json_path, report)
        console.print(f"JSON written to {json_path}")
    if junit_path is not None:
        from celery_sim.reports.junit import write_junit

        write_junit(junit_path, report)
        console.print(f"JUnit XML written to {junit_path}")
    if html_path is not None:
        from celery_sim.reports.html import write_html

        write_html(html_path, report)
        console.print(f"HTML report written to {html_path}")
    if report.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)


def main() -> None:
    cli(prog_name="celery-sim")
