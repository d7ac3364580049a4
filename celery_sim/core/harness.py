"""The harness: one object owning a run's Celery app, broker, workers and timeline."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from celery import Celery

from celery_sim.core import timewarp
from celery_sim.core.admin import RunQueues
from celery_sim.core.adopt import Adoption, lend, release_backend, routed_queues
from celery_sim.core.appfactory import AppSpec, Configure
from celery_sim.core.brokers import Broker, Endpoints, backend_kind, resolve_broker
from celery_sim.core.namespace import Namespace
from celery_sim.core.workers import WORKER_KINDS
from celery_sim.core.workers.crew import Crew, Worker
from celery_sim.errors import HarnessError, WorkerError
from celery_sim.observe.recorder import Recorder
from celery_sim.observe.timeline import Timeline

if TYPE_CHECKING:
    from kombu import Queue

    from celery_sim.core.expect import TaskExpectation

__all__ = ["WORKER_KINDS", "Harness", "HarnessConfig", "Worker"]


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HarnessConfig:
    """How to build a run: broker, the queues the main worker consumes, and the app's configuration.

    ``queues`` and every queue name given to the harness are logical names; the harness maps
    them into the run's namespace (see :class:`~celery_sim.core.namespace.Namespace`).
    """

    broker: str = "memory"
    result_backend: str | None = None
    concurrency: int = 4
    #: The app the run lends and gives back (see :mod:`celery_sim.core.adopt`): a Celery app, a
    #: ``"module:attr"`` path (worker processes need one) or a factory; None: the harness builds
    #: one from ``configure`` and ``extra_conf``.
    app: Any = None
    #: Queues the main worker consumes; None: every queue the app routes its tasks to, declares
    #: or defaults to (a built app: ``default``).
    queues: tuple[str, ...] | None = None
    #: Queues the main worker must not consume (a test of what happens when nobody does).
    unconsumed: tuple[str, ...] = ()
    configure: Configure | None = None
    start_timeout: float = 10.0
    stop_timeout: float = 10.0
    worker_loglevel: str = "WARNING"
    run_id: str | None = None
    #: Delays of published messages are multiplied by this (see :mod:`celery_sim.core.timewarp`).
    time_scale: float = 1.0
    #: Where the main worker runs: "thread" (embedded, in this process), "process" (a ``celery
    #: worker`` subprocess with the prefork pool) or "external" (workers started by the user for
    #: ``run_id``, found with ``ping``); the last two need a broker other processes can reach.
    #: Workers a scenario starts itself are processes in "process" mode, threads otherwise.
    worker: str = "thread"
    extra_conf: dict[str, Any] = field(default_factory=dict)

    def check(self, broker: Broker) -> None:
        """Raise :class:`HarnessError`, naming the value and the fix, if this cannot run on ``broker``."""
        if self.worker not in WORKER_KINDS:
            raise HarnessError(f"worker={self.worker!r}: choose one of {', '.join(WORKER_KINDS)}")
        if self.worker == "external" and not self.run_id:
            raise HarnessError("worker='external' needs a fixed run_id: the external workers consume its queues")
        if self.worker != "thread" and broker.name == "memory":
            raise HarnessError(
                f"worker={self.worker!r} needs a broker other processes can reach; the memory broker "
                "lives in this process: use broker 'fakeredis' (embedded too) or a real broker's URL"
            )


class Harness:
    """Builds a fresh Celery app on a broker, runs an embedded worker, records a timeline.

    Use as a context manager; :meth:`stop` is bounded and always releases the broker state,
    the workers and Celery's current app, even after a failed start.
    """

    def __init__(
        self, config: HarnessConfig | None = None, *, timeline: Timeline | None = None, **overrides: Any
    ) -> None:
        base = config or HarnessConfig()
        self.config = HarnessConfig(**{**base.__dict__, **overrides}) if overrides else base
        self.broker: Broker = resolve_broker(self.config.broker, self.config.result_backend)
        self.ns = Namespace(self.config.run_id) if self.config.run_id else Namespace()
        #: Shared when this harness serves another (see :meth:`attach`): one run, one timeline.
        self.timeline = timeline if timeline is not None else Timeline()
        # What the run deletes at its end must outlive the timeline's compaction on a long run.
        self.timeline.remember("published", "queue")
        if self.backend_kind == "db":  # its rows are deleted by task id
            self.timeline.remember("published", "task_id")
        self._app: Celery | None = None
        self._adoption: Adoption | None = None
        self._built = False
        self._main_queues: tuple[str, ...] = ()
        self._endpoints: Endpoints | None = None
        self._recorder: Recorder | None = None
        self._spec: AppSpec | None = None
        self._sides: list[Harness] = []
        self.crew = Crew(self)
        self.run_queues = RunQueues(self)
        self._started = False
        #: Failed tasks :meth:`drain` has raised already (each is raised once).
        self.raised: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Harness:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._started:
            raise HarnessError("this harness was already started; build a new Harness for a new run")
        self.config.check(self.broker)
        self._started = True
        try:
            self._endpoints = self.broker.open(self.ns.run_id)
            self._app = self._adopt(self._endpoints)
            self._recorder = Recorder(self._app, self.timeline)
            self._app.set_current()
            self._main_queues = self._resolve_main_queues()
            if self.config.worker == "external":
                self.crew.find_external(self.config.start_timeout)
            else:
                self.start_worker(self._main_queues, name="main", concurrency=self.config.concurrency)
        except BaseException:
            self.stop()
            raise

    def _adopt(self, endpoints: Endpoints) -> Celery:
        """The run's app: the user's (``config.app``) or one built for the catalog, adopted."""
        target = self.config.app
        spec = AppSpec(
            broker_url=endpoints.broker_url,
            result_backend=endpoints.result_backend,
            run_id=self.ns.run_id,
            configure=self.config.configure,
            time_scale=self.config.time_scale,
            extra_conf=dict(self.config.extra_conf),
            app_path=target if isinstance(target, str) else None,
        )
        self._spec = spec
        self._built = target is None
        app, self._adoption = lend(target, spec)
        return app

    def _resolve_main_queues(self) -> tuple[str, ...]:
        """The main worker's queues (run names): as configured, else every queue the app routes to."""
        if self.config.queues is not None:
            names = [self.ns.queue(q) for q in self.config.queues]
        elif self._built:
            names = [self.ns.queue("default")]
        else:
            names = routed_queues(self.app)
        unconsumed = {self.ns.queue(q) for q in self.config.unconsumed}
        return tuple(n for n in names if n not in unconsumed)

    @property
    def main_queues(self) -> tuple[str, ...]:
        """The queues (run names) the main workers consume."""
        return self._main_queues

    def stop(self) -> None:
        """Stop every worker, delete this run's queues and release the broker; safe to call twice."""
        errors: list[str] = []
        sides, self._sides = self._sides, []
        for side in sides:
            try:
                side.stop()
            except WorkerError as exc:
                errors.append(str(exc))
        try:
            self.crew.stop(list(self.crew.workers))
        except WorkerError as exc:
            errors.append(str(exc))
        self.crew.stop_events()  # before the event exchange is deleted: stopping sends it an event
        if self._app is not None:
            self.run_queues.release(list(self._adoption.backends if self._adoption else ()))
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None
        if self._endpoints is not None:
            self._endpoints.close()
            self._endpoints = None
        if self._adoption is not None:
            self._adoption.restore()  # the user's app as it was; its current-app state too
            self._adoption = None
        if self._app is not None:
            if self._built:
                self._app.close()
            self._app = None
        if errors:
            raise WorkerError("; ".join(errors))

    def release_thread_backend(self) -> None:
        """Release the result backend Celery made for the calling thread, as the thread ends.

        Celery keeps one backend per thread (rpc, Redis); each scenario runs in its own thread.
        """
        if self._app is not None:
            backend = getattr(getattr(self._app, "_local", None), "backend", None)
            if backend is not None:
                release_backend(backend)

    # -- access ------------------------------------------------------------------------------

    @property
    def app(self) -> Celery:
        if self._app is None:
            raise HarnessError("the harness is not running; call start() or use it in a with-block")
        return self._app

    @property
    def running(self) -> bool:
        return self._app is not None

    @property
    def broker_label(self) -> str:
        """The broker as it may be shown to a user (no password)."""
        return self.broker.labels()[0]

    @property
    def result_backend_label(self) -> str:
        """The result backend as it may be shown to a user (no password)."""
        return self.broker.labels()[1]

    @property
    def backend_kind(self) -> str | None:
        """ "rpc" or "db" when the result backend was chosen so (see :func:`~celery_sim.core.brokers.backend_kind`)."""
        return backend_kind(self.config.result_backend)

    @property
    def reply_queues(self) -> list[Queue]:
        """The rpc:// reply queues of this run's threads (deleted with the run's queues)."""
        return list(self._adoption.reply_queues.values()) if self._adoption is not None else []

    @property
    def spec(self) -> AppSpec | None:
        """What a worker process needs to rebuild the run's app (None before start)."""
        return self._spec

    @property
    def endpoints(self) -> Endpoints | None:
        return self._endpoints

    # -- workers (see :class:`~celery_sim.core.workers.crew.Crew`) ---------------------------

    @property
    def workers(self) -> tuple[Worker, ...]:
        return tuple(self.crew.workers)

    @property
    def main_worker(self) -> Worker:
        """The main worker this harness started (not in "external" mode: see :attr:`main_hostnames`)."""
        return self.crew.main_worker

    @property
    def main_hostnames(self) -> tuple[str, ...]:
        """Node names of the workers consuming the run's main queues (several in "external" mode)."""
        return self.crew.main_hostnames

    @property
    def hostnames(self) -> tuple[str, ...]:
        """Node names of every worker of the run (each answers ``ping``), external ones included."""
        return self.crew.hostnames

    @property
    def main_concurrency(self) -> int:
        """Pool slots of the main workers together."""
        return self.crew.main_concurrency

    def start_worker(
        self, queues: Sequence[str], *, name: str, concurrency: int = 1, kind: str | None = None, events: str = "off"
    ) -> Worker:
        """Start another worker consuming ``queues`` (``events``: "off", "on" or "switchable"); stopped with the harness."""
        return self.crew.start(queues, name=name, concurrency=concurrency, kind=kind, events=events)

    def lasting_worker(self, queues: Sequence[str], *, name: str, concurrency: int = 1) -> Worker:
        """The worker ``name``: started on first use, then kept (stopped with the harness)."""
        return self.crew.lasting(queues, name=name, concurrency=concurrency)

    def stop_workers(self, workers: Sequence[Worker]) -> None:
        """Stop ``workers`` together."""
        self.crew.stop(workers)

    def consumers_of(self, queue: str) -> list[str]:
        """Hostnames of the running workers that consume ``queue`` (a run queue name)."""
        return self.crew.consumers_of(queue)

    # -- queues (see :class:`~celery_sim.core.admin.RunQueues`) ------------------------------

    def known_queues(self) -> list[str]:
        """This run's queues: declared, consumed, or published to."""
        return self.run_queues.known_queues()

    def queue_size(self, queue: str) -> int:
        """Messages waiting in ``queue`` (your name for it, or the run's)."""
        return self.run_queues.queue_size(queue)

    def purge(self, queues: Iterable[str] | None = None) -> int:
        """Discard waiting messages from this run's queues (default: all); returns how many."""
        return self.run_queues.purge(queues)

    def attach(self, child: Harness) -> None:
        """Stop ``child`` (another harness of this run, e.g. on another broker) with this one."""
        self._sides.append(child)

    def time_scale(self, scale: float) -> AbstractContextManager[None]:
        """Within the block, delays of messages published by this run are multiplied by ``scale``.

        Messages published in the block carry the scale, so their retries are compressed too,
        even after the block has ended (see :mod:`celery_sim.core.timewarp`).
        """
        return timewarp.scaled(self.app.conf, scale)

    def drain(self, timeout: float = 10.0, *, fail_fast: bool = True) -> None:
        """Wait until every task this run published has ended (see :func:`celery_sim.core.drain.drain`)."""
        from celery_sim.core.drain import drain

        drain(self, timeout, fail_fast=fail_fast)

    def diagnose(self, result_or_id: Any) -> str:
        """Why a task (an AsyncResult, a group's, chain's or chord's, or a task id) is not done,
        in one sentence naming the cause and the fix (see :mod:`celery_sim.observe.diagnose`)."""
        from celery_sim.observe.diagnose import diagnose_result, diagnose_task

        if isinstance(result_or_id, str):
            return diagnose_task(self, result_or_id)
        return diagnose_result(self, result_or_id)

    def expect(self, result_or_id: Any) -> TaskExpectation:
        """Assertions on what the run observed of one task (see :class:`~celery_sim.core.expect.TaskExpectation`)."""
        from celery_sim.core.expect import TaskExpectation

        return TaskExpectation(self, result_or_id)

    def failure_of(self, task_id: str) -> BaseException | None:
        """The exception object task ``task_id`` raised in its last attempt, when it ran in this process."""
        return self._recorder.exceptions.get(task_id) if self._recorder is not None else None

    def queue(self, name: str) -> str:
        """This run's name for logical queue ``name``."""
        return self.ns.queue(name)
