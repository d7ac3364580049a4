"""The workers of one run: started, found (external), stopped together, and who consumes what."""

from __future__ import annotations

from collections.abc import Sequence
from time import monotonic
from typing import TYPE_CHECKING

from celery_sim.core.appfactory import configure_path
from celery_sim.core.workers.probe import ask, probe_control
from celery_sim.core.workers.process import ProcessWorker, external_worker_command
from celery_sim.core.workers.thread import EmbeddedWorker
from celery_sim.errors import HarnessError, WorkerError
from celery_sim.observe.events import EventRecorder

if TYPE_CHECKING:
    from celery_sim.core.harness import Harness

__all__ = ["Crew", "Worker"]

Worker = EmbeddedWorker | ProcessWorker


class Crew:
    """The workers a harness started (threads or processes) or found (external), and the event
    receiver that records what worker processes do."""

    def __init__(self, harness: Harness) -> None:
        self.h = harness
        self.workers: list[Worker] = []
        #: hostname -> pool size of the external workers found at start ("external" mode).
        self.external: dict[str, int] = {}
        self._events: EventRecorder | None = None

    @property
    def external_mode(self) -> bool:
        return self.h.config.worker == "external"

    def start(
        self, queues: Sequence[str], *, name: str, concurrency: int = 1, kind: str | None = None, events: str = "off"
    ) -> Worker:
        """Start a worker consuming ``queues`` (your names or the run's); stopped with the harness.

        ``kind`` ("thread" or "process") defaults to the harness's ``worker`` setting. ``events``:
        how an embedded worker sends events (see :data:`~celery_sim.core.workers.thread.EVENT_MODES`);
        a worker process always sends task events (``-E``): the run observes it by them.
        """
        h = self.h
        kind = kind or ("process" if h.config.worker == "process" else "thread")
        hostname = f"{name}@{h.ns.prefix}"
        run_queues = [h.ns.queue(q) for q in queues]
        worker: Worker
        if kind == "process":
            if h.spec is None:
                raise HarnessError("the harness is not running; call start() first")
            self.record_events()
            worker = ProcessWorker(
                h.app, h.spec, hostname=hostname, queues=run_queues, concurrency=concurrency,
                loglevel=h.config.worker_loglevel, private_broker=h.broker.embedded,
            )  # fmt: skip
        else:
            endpoints = h.endpoints
            worker = EmbeddedWorker(
                h.app, hostname=hostname, queues=run_queues, concurrency=concurrency,
                wake=endpoints.wake if endpoints else None, loglevel=h.config.worker_loglevel,
                events=events,
            )  # fmt: skip
        self.workers.append(worker)
        worker.start(h.config.start_timeout)
        return worker

    def lasting(self, queues: Sequence[str], *, name: str, concurrency: int = 1) -> Worker:
        """The worker ``name``: started on first use, then kept for the rest of the run."""
        hostname = f"{name}@{self.h.ns.prefix}"
        for worker in self.workers:
            if worker.hostname == hostname and worker.running:
                return worker
        return self.start(queues, name=name, concurrency=concurrency)

    def stop(self, workers: Sequence[Worker]) -> None:
        """Stop ``workers`` together (each waits on its broker at most once, in parallel)."""
        for worker in workers:
            if worker in self.workers:
                self.workers.remove(worker)
            worker.request_stop()
        errors: list[str] = []
        for worker in workers:
            try:
                worker.stop(self.h.config.stop_timeout)
            except WorkerError as exc:
                errors.append(f"{exc}{self._running_on(worker.hostname)}")
        if errors:
            raise WorkerError("; ".join(errors))

    def _running_on(self, hostname: str) -> str:
        """Since when each task still running on ``hostname`` started (from the timeline)."""
        timeline = self.h.timeline
        now = timeline.now()
        running = [f"{e.name!r} {e.task_id} started {now - e.at:.1f}s ago" for e in timeline.running_on(hostname)]
        return f" (still running there: {', '.join(running)})" if running else ""

    def consumers_of(self, queue: str) -> list[str]:
        """Hostnames of the running workers that consume ``queue`` (a run queue name)."""
        found = [w.hostname for w in self.workers if w.running and queue in w.queues]
        if self.external_mode and queue in self.h.main_queues:
            found += self.main_hostnames
        return found

    @property
    def main_worker(self) -> Worker:
        if self.external_mode:
            raise HarnessError("in external mode the main workers are not the harness's; use main_hostnames")
        if not self.workers:
            raise HarnessError("the harness has no worker; call start() first")
        return self.workers[0]

    @property
    def main_hostnames(self) -> tuple[str, ...]:
        if self.external_mode:
            return tuple(sorted(self.external))
        return (self.main_worker.hostname,)

    @property
    def hostnames(self) -> tuple[str, ...]:
        """Node names of every worker of the run: those it started (running) and the external ones."""
        return tuple(sorted({*(w.hostname for w in self.workers if w.running), *self.external}))

    @property
    def main_concurrency(self) -> int:
        if self.external_mode:
            return sum(self.external.values())
        return self.main_worker.concurrency

    def find_external(self, timeout: float) -> None:
        """Wait until workers started by the user consume every main queue (``ping``, then ``active_queues``)."""
        h = self.h
        self.record_events()
        wanted = set(h.main_queues)
        deadline = monotonic() + timeout
        consumed: dict[str, set[str]] = {}
        control = probe_control(h.app)
        while monotonic() < deadline:
            if ask(control, "ping", timeout=0.5, limit=None):
                # Every worker, not only those that answered ping: one still starting then is a main worker too.
                active = ask(control, "active_queues", timeout=1.0, limit=None)
                consumed = {host: {q["name"] for q in queues} & wanted for host, queues in active.items()}
                if set().union(*consumed.values(), set()) >= wanted:
                    hosts = sorted(consumed)
                    stats = ask(control, "stats", timeout=1.0, limit=len(hosts), destination=hosts)
                    self.external = {
                        host: int(stats.get(host, {}).get("pool", {}).get("max-concurrency", 1))
                        for host, queues in consumed.items()
                        if queues
                    }
                    h.app.control.enable_events()  # the timeline is built from task events
                    return
        missing = sorted(wanted - set().union(*consumed.values(), set()))
        command = external_worker_command(
            h.config.broker,
            h.ns,
            [h.ns.logical(q) for q in h.main_queues],
            h.config.result_backend,
            app_path=h.spec.app_path if h.spec else None,
            configure_path=configure_path(h.config.configure) if h.config.configure else None,
        )
        raise WorkerError(
            f"no external worker consumes {', '.join(h.ns.logical(q) for q in missing)} of run "
            f"{h.ns.run_id} after {timeout:g}s (workers answering: {', '.join(sorted(consumed)) or 'none'}). "
            f"Start one with: {command}"
        )

    def record_events(self) -> None:
        """Record the task events of workers in other processes in the timeline (from now on)."""
        if self._events is None:
            self._events = EventRecorder(self.h.app, self.h.timeline)
            self._events.start(self.h.config.start_timeout)

    def stop_events(self) -> None:
        if self._events is not None:
            self._events.stop(self.h.config.stop_timeout)
            self._events = None
