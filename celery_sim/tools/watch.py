"""``python -m celery_sim monitor``: the live view, on a deployment or on the embedded demo.

Each mode owns what it starts and stops it on the way out (Ctrl-C included): the demo's harness
and load; the deployment's event receiver, and the task events it asked the workers for.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from celery import Celery
from rich.console import Console

from celery_sim.core.adopt import routed_queues
from celery_sim.core.workers.probe import by_host, probe_control
from celery_sim.observe.stream import EventStream
from celery_sim.reports.live_monitor import LiveMonitorView
from celery_sim.reports.monitor_view import render_snapshot
from celery_sim.tools.monitor import DeploymentMonitor, Snapshot, run_snapshot

__all__ = ["watch_demo", "watch_deployment"]

#: How long ``--once`` on the demo waits for its progress task to report (it does within 0.2 s).
DEMO_READY_S = 10.0


def _live(console: Console, snapshot: Callable[[], Snapshot | None], interval: float, duration: float | None) -> None:
    """Show ``snapshot()`` live until Ctrl-C (or ``duration`` seconds)."""
    view = LiveMonitorView(console, snapshot, interval=interval)
    view.footer = f"refreshed every {view.interval:g} s; Ctrl-C to exit"
    stopped = threading.Event()
    view.start()
    try:
        if duration is not None:
            stopped.wait(duration)
        else:
            while not stopped.wait(1.0):  # until Ctrl-C, as `celery events`
                pass
    except KeyboardInterrupt:
        pass
    finally:
        view.footer = "monitor stopped"
        view.stop()


def watch_demo(*, once: bool, interval: float, duration: float | None) -> None:
    """The embedded broker and worker, running :class:`demos.monitor.load.DemoLoad`."""
    from celery_sim.core.harness import Harness
    from celery_sim.scenarios.catalog import default_config
    from demos.monitor.load import DemoLoad

    console = Console(highlight=False)
    console.print("[bold]celery_sim monitor[/]: the embedded broker and worker, running a small demo load")
    with Harness(default_config()) as harness:
        load = DemoLoad(harness)
        load.start()
        try:
            if once:
                harness.timeline.wait_for(lambda e: e.kind == "progress", timeout=DEMO_READY_S)
                console.print(render_snapshot(run_snapshot(harness)))
            else:
                _live(console, lambda: run_snapshot(harness), interval, duration)
        finally:
            load.stop()


def watch_deployment(app: Celery, *, once: bool, interval: float, duration: float | None, enable_events: bool) -> None:
    """Workers, queues and tasks on ``app``'s broker (see :class:`~celery_sim.tools.monitor.DeploymentMonitor`)."""
    console = Console(highlight=False)
    control = probe_control(app)
    enabled: list[str] = []
    with EventStream(app) as stream:
        try:
            if enable_events:
                replies = by_host(control.enable_events(reply=True, timeout=1.0))
                enabled = sorted(h for h, r in replies.items() if r.get("ok") == "task events enabled")
                already = sorted(h for h, r in replies.items() if r.get("ok") == "task events already enabled")
                unable = sorted(h for h, r in replies.items() if "error" in r)
                print(  # on stderr: the live view owns stdout
                    f"enable_events: switched on for {', '.join(enabled) or 'none'}; already on for "
                    f"{', '.join(already) or 'none'}; no event dispatcher (started with --without-heartbeat and "
                    f"--without-gossip) on {', '.join(unable) or 'none'}",
                    file=sys.stderr,
                    flush=True,
                )
            monitor = DeploymentMonitor(app, stream, queues=lambda: routed_queues(app))
            if once:
                # Task events arrive only from now on: collect them for one interval first.
                stream.wait_for(lambda s: False, timeout=interval)
                console.print(render_snapshot(monitor.snapshot()))
            else:
                _live(console, monitor.snapshot, interval, duration)
        finally:
            if enabled:  # only those it switched on: a -E worker keeps its events
                control.disable_events(destination=enabled, reply=True, timeout=1.0)
