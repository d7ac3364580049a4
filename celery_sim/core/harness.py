"""The harness: one object owning a run's Celery app, broker, workers and timeline."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from time import monotonic
from types import TracebackType
from typing import TYPE_CHECKING, Any

from celery import Celery
from kombu.exceptions import ChannelError

from celery_sim.core import timewarp
from celery_sim.core.adopt import Adoption, load_app, routed_queues
from celery_sim.core.appfactory import AppSpec, Configure, build_app, configure_path
from celery_sim.core.brokers import Broker, Endpoints, backend_kind, mask_url, resolve_broker
from celery_sim.core.cleanup import delete_run_keys
from celery_sim.core.namespace import Namespace
from celery_sim.core.workers.process import ProcessWorker, external_worker_command
from celery_sim.core.workers.thread import EmbeddedWorker
from celery_sim.errors import HarnessError, WorkerError
from celery_sim.observe.events import EventRecorder
from celery_sim.observe.recorder import Recorder
from celery_sim.observe.timeline import Timeline

if TYPE_CHECKING:
    from celery_sim.core.expect import TaskExpectation

__all__ = ["WORKER_KINDS", "Harness", "HarnessConfig", "Worker"]

#: Where the main worker runs: embedded thread, a ``celery worker`` process the harness starts, or
#: workers the user started (anywhere) for this run's namespace.
WORKER_KINDS = ("thread", "process", "external")
Worker = EmbeddedWorker | ProcessWorker

log = logging.getLogger(__name__)

#: Pool processes of the run's prefork worker (:meth:`Harness.prefork`): two, so that a task
#: redelivered after its process was killed need not wait for the replacement (Celery's pool
#: replaces a dead process at once, or up to 5 s later when its exit is missed).
PREFORK_PROCESSES = 2


def _release_backend(backend: Any) -> None:
    """Stop a result backend's consumer: Redis pub/sub, or the rpc reply-queue consumer.

    Redis: an AsyncResult unsubscribes when it is garbage-collected; after the broker is gone that
    retries for 20 s. Celery skips the unsubscribe when the consumer has no pub/sub connection.
    rpc: the reply queue is named after the thread's id, which Python reuses once a thread ends;
    a consumer left open by an ended thread would take (and lose) the replies of a later thread
    with the same id (measured on RabbitMQ: every result lost after the third scenario).
    """
    consumer = getattr(backend, "result_consumer", None)
    if consumer is not None and hasattr(consumer, "_pubsub"):
        consumer.stop()
        consumer._pubsub = None
        backend.client.connection_pool.disconnect()
    elif consumer is not None and getattr(consumer, "_consumer", None) is not None:
        consumer.stop()
        consumer._consumer = None


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
        #: Shared when this harness serves another (see :meth:`prefork`): one run, one timeline.
        self.timeline = timeline if timeline is not None else Timeline()
        self._app: Celery | None = None
        self._adoption: Adoption | None = None
        self._built = False
        self._main_queues: tuple[str, ...] = ()
        self._endpoints: Endpoints | None = None
        self._recorder: Recorder | None = None
        self._workers: list[Worker] = []
        self._spec: AppSpec | None = None
        self._events: EventRecorder | None = None
        self._prefork: tuple[Harness, Worker] | None = None
        self._sides: list[Harness] = []
        #: hostname -> pool size of the external workers found at start ("external" mode).
        self._external: dict[str, int] = {}
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
        if self.config.worker not in WORKER_KINDS:
            raise HarnessError(f"worker={self.config.worker!r}: choose one of {', '.join(WORKER_KINDS)}")
        if self.config.worker == "external" and not self.config.run_id:
            raise HarnessError("worker='external' needs a fixed run_id: the external workers consume its queues")
        if self.config.worker != "thread" and self.broker.name == "memory":
            raise HarnessError(
                f"worker={self.config.worker!r} needs a broker other processes can reach; the memory broker "
                "lives in this process: use broker 'fakeredis' (embedded too) or a real broker's URL"
            )
        self._started = True
        try:
            self._endpoints = self.broker.open(self.ns.run_id)
            self._app = self._adopt(self._endpoints)
            self._recorder = Recorder(self._app, self.timeline)
            self._app.set_current()
            self._main_queues = self._resolve_main_queues()
            if self.config.worker == "external":
                self._find_external_workers(self.config.start_timeout)
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
        app = build_app(spec) if target is None else load_app(target)
        if target is not None:  # the modules of include= / imports, as a worker imports them at start
            app.loader.import_default_modules()
        adoption = Adoption(
            app,
            ns=self.ns,
            broker_url=endpoints.broker_url,
            result_backend=endpoints.result_backend,
            time_scale=self.config.time_scale,
            extra_conf=self.config.extra_conf,
        )
        adoption.apply()
        self._adoption = adoption
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
        self._prefork = None
        sides, self._sides = self._sides, []
        for side in sides:
            try:
                side.stop()
            except WorkerError as exc:
                errors.append(str(exc))
        try:
            self.stop_workers(list(self._workers))
        except WorkerError as exc:
            errors.append(str(exc))
        if self._app is not None:
            for delete, what in ((self._delete_from_broker, "queues and exchanges"), (self._delete_results, "results")):
                try:
                    delete()
                except Exception as exc:  # the broker may be gone; stopping must still finish
                    log.warning("could not delete the %s of run %s: %r", what, self.ns.run_id, exc)
            for backend in list(self._adoption.backends if self._adoption else ()):
                _release_backend(backend)
        if self._events is not None:
            self._events.stop(self.config.stop_timeout)
            self._events = None
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
                _release_backend(backend)

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
        if self.broker.embedded:
            return self.broker.name
        return mask_url(self._endpoints.broker_url if self._endpoints else self.config.broker)

    @property
    def result_backend_label(self) -> str:
        """The result backend as it may be shown to a user (no password)."""
        if self.broker.embedded:
            return f"{self.broker.name} (embedded)"
        return mask_url(self.config.result_backend or str(getattr(self.broker, "result_backend", "")))

    @property
    def backend_kind(self) -> str | None:
        """ "rpc" or "db" when the result backend was chosen so (see :func:`~celery_sim.core.brokers.backend_kind`)."""
        return backend_kind(self.config.result_backend)

    @property
    def workers(self) -> tuple[Worker, ...]:
        return tuple(self._workers)

    @property
    def main_worker(self) -> Worker:
        """The main worker this harness started (not in "external" mode: see :attr:`main_hostnames`)."""
        if self.config.worker == "external":
            raise HarnessError("in external mode the main workers are not the harness's; use main_hostnames")
        if not self._workers:
            raise HarnessError("the harness has no worker; call start() first")
        return self._workers[0]

    @property
    def main_hostnames(self) -> tuple[str, ...]:
        """Node names of the workers consuming the run's main queues (several in "external" mode)."""
        if self.config.worker == "external":
            return tuple(sorted(self._external))
        return (self.main_worker.hostname,)

    @property
    def main_concurrency(self) -> int:
        """Pool slots of the main workers together."""
        if self.config.worker == "external":
            return sum(self._external.values())
        return self.main_worker.concurrency

    def _find_external_workers(self, timeout: float) -> None:
        """Wait until workers started by the user consume every main queue (``ping``, then ``active_queues``)."""
        self._record_events()
        wanted = set(self._main_queues)
        deadline = monotonic() + timeout
        consumed: dict[str, set[str]] = {}
        while monotonic() < deadline:
            if self.app.control.ping(timeout=0.5):
                inspect = self.app.control.inspect(timeout=1.0)
                active = inspect.active_queues() or {}
                consumed = {host: {q["name"] for q in queues} & wanted for host, queues in active.items()}
                if set().union(*consumed.values(), set()) >= wanted:
                    stats: dict[str, Any] = inspect.stats() or {}
                    self._external = {
                        host: int(stats.get(host, {}).get("pool", {}).get("max-concurrency", 1))
                        for host, queues in consumed.items()
                        if queues
                    }
                    self.app.control.enable_events()  # the timeline is built from task events
                    return
        missing = sorted(wanted - set().union(*consumed.values(), set()))
        raise WorkerError(
            f"no external worker consumes {', '.join(self.ns.logical(q) for q in missing)} of run "
            f"{self.ns.run_id} after {timeout:g}s (workers answering: {', '.join(sorted(consumed)) or 'none'}). "
            "Start one with: "
            + external_worker_command(
                self.config.broker,
                self.ns,
                [self.ns.logical(q) for q in self._main_queues],
                self.config.result_backend,
                app_path=self._spec.app_path if self._spec else None,
                configure_path=configure_path(self.config.configure) if self.config.configure else None,
            )
        )

    def _record_events(self) -> None:
        """Record the task events of workers in other processes in the timeline (from now on)."""
        if self._events is None:
            self._events = EventRecorder(self.app, self.timeline)
            self._events.start(self.config.start_timeout)

    def prefork(self) -> tuple[Harness, Worker]:
        """A harness and its real ``celery worker`` process (prefork pool) consuming ``prefork``.

        What only the prefork pool does (time limits, ``revoke(terminate=True)``) needs it. Started
        on first use, shared by the run's scenarios and stopped (the process reaped) with this
        harness. On a broker other processes can reach it is this harness, with one more worker;
        on the memory broker, which lives in this process, it is a second harness on the embedded
        fakeredis broker, recording into this harness's timeline. Send to it through its own app:
        ``pf.app.tasks[name].apply_async(..., queue=pf.queue("prefork"))``.
        """
        if self._prefork is None:
            if self.broker.name != "memory":
                worker = self.start_worker(["prefork"], name="prefork", concurrency=PREFORK_PROCESSES, kind="process")
                self._prefork = (self, worker)
            else:
                nested = self.side(
                    broker="fakeredis", worker="process", queues=("prefork",), concurrency=PREFORK_PROCESSES
                )
                self._prefork = (nested, nested.main_worker)
        return self._prefork

    def side(self, **overrides: Any) -> Harness:
        """Another harness for this run, with ``overrides`` of its configuration (another broker,
        other transport options), started now and stopped with this one.

        It has its own app and namespace but records into this harness's timeline. Send to it
        through its own app (``side.app.tasks[name]``), not the shared task proxies.
        """
        defaults: dict[str, Any] = {"run_id": None}
        if "broker" in overrides:
            defaults["result_backend"] = None  # the other broker's own default
        if self.config.worker == "external":
            defaults["worker"] = "thread"  # the user's workers consume this run's namespace only
        config = replace(self.config, **{**defaults, **overrides})
        side = Harness(config, timeline=self.timeline)
        self._sides.append(side)
        try:
            side.start()
        finally:
            self.app.set_current()  # starting made the side harness's app current
        return side

    @contextmanager
    def time_scale(self, scale: float) -> Iterator[None]:
        """Within the block, delays of messages published by this run are multiplied by ``scale``.

        Messages published in the block carry the scale, so their retries are compressed too,
        even after the block has ended (see :mod:`celery_sim.core.timewarp`).
        """
        conf = self.app.conf
        previous = conf.get(timewarp.CONF_KEY)
        conf[timewarp.CONF_KEY] = timewarp.validate_scale(scale)
        try:
            yield
        finally:
            conf[timewarp.CONF_KEY] = previous

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

    # -- workers -----------------------------------------------------------------------------

    def start_worker(
        self, queues: Sequence[str], *, name: str, concurrency: int = 1, kind: str | None = None
    ) -> Worker:
        """Start another worker consuming logical ``queues``; it is stopped with the harness.

        ``kind`` ("thread" or "process") defaults to the harness's ``worker`` setting.
        """
        kind = kind or ("process" if self.config.worker == "process" else "thread")
        hostname = f"{name}@{self.ns.prefix}"
        run_queues = [self.ns.queue(q) for q in queues]
        worker: Worker
        if kind == "process":
            if self._spec is None:
                raise HarnessError("the harness is not running; call start() first")
            self._record_events()
            worker = ProcessWorker(
                self.app,
                self._spec,
                hostname=hostname,
                queues=run_queues,
                concurrency=concurrency,
                loglevel=self.config.worker_loglevel,
            )
        else:
            worker = EmbeddedWorker(
                self.app,
                hostname=hostname,
                queues=run_queues,
                concurrency=concurrency,
                wake=self._endpoints.wake if self._endpoints else None,
                loglevel=self.config.worker_loglevel,
            )
        self._workers.append(worker)
        worker.start(self.config.start_timeout)
        return worker

    def lasting_worker(self, queues: Sequence[str], *, name: str, concurrency: int = 1) -> Worker:
        """The worker ``name`` consuming logical ``queues``: started on first use, then kept for the
        rest of the run (stopped with the harness), so that scenarios sharing it start none."""
        hostname = f"{name}@{self.ns.prefix}"
        for worker in self._workers:
            if worker.hostname == hostname and worker.running:
                return worker
        return self.start_worker(queues, name=name, concurrency=concurrency)

    def stop_workers(self, workers: Sequence[Worker]) -> None:
        """Stop ``workers`` together (each waits on its broker at most once, in parallel)."""
        for worker in workers:
            if worker in self._workers:
                self._workers.remove(worker)
            worker.request_stop()
        errors: list[str] = []
        for worker in workers:
            try:
                worker.stop(self.config.stop_timeout)
            except WorkerError as exc:
                errors.append(f"{exc}{self._running_on(worker.hostname)}")
        if errors:
            raise WorkerError("; ".join(errors))

    def _running_on(self, hostname: str) -> str:
        """Since when each task still running on ``hostname`` started (from the timeline)."""
        now = self.timeline.now()
        running = [f"{e.name!r} {e.task_id} started {now - e.at:.1f}s ago" for e in self.timeline.running_on(hostname)]
        return f" (still running there: {', '.join(running)})" if running else ""

    def consumers_of(self, queue: str) -> list[str]:
        """Hostnames of the running workers that consume ``queue`` (a run queue name)."""
        found = [w.hostname for w in self._workers if w.running and queue in w.queues]
        if self.config.worker == "external" and queue in self._main_queues:
            found += self.main_hostnames
        return found

    # -- queues ------------------------------------------------------------------------------

    def known_queues(self) -> list[str]:
        """This run's queues: declared, consumed, or published to."""
        names: set[str] = {q.name for q in self.app.amqp.queues.values()}
        names.update(q for w in self._workers for q in w.queues)
        names.update(str(e.data.get("queue")) for e in self.timeline.events(kinds=["published"]) if e.data.get("queue"))
        return sorted(n for n in names if self.ns.owns(n))

    def queue_size(self, queue: str) -> int:
        """Messages waiting in ``queue`` (a run queue name).

        A queue the broker does not know holds no message (on Redis an empty queue does not exist).
        """
        with self.app.connection_for_read() as conn:
            channel: Any = conn.channel()
            try:
                return int(channel.queue_declare(queue, passive=True).message_count)
            except ChannelError:
                return 0
            finally:
                channel.close()

    def _delete_from_broker(self) -> None:
        """Delete this run's queues (and their messages) and exchanges, so that a shared broker keeps
        no trace of the run.

        In "external" mode the main queues, purged only, and the control and event exchanges stay:
        the user's workers still consume them.
        """
        external = self.config.worker == "external"
        keep = set(self._main_queues) if external else set()
        queues = [q for q in self.known_queues() if q not in keep]
        if keep:
            self.purge(keep)
        exchanges = {
            str(q.exchange.name)
            for q in self.app.amqp.queues.values()
            if q.exchange is not None and self.ns.owns(str(q.exchange.name)) and q.name not in keep
        }
        if not external:  # else the user's workers still use them (their control, replies and events)
            control = self.ns.control_exchange
            exchanges |= {f"{control}.pidbox", f"reply.{control}.pidbox", self.ns.event_exchange}
        exchanges -= {str(self.app.amqp.queues[q].exchange.name) for q in keep if q in self.app.amqp.queues}
        with self.app.connection_for_write() as conn:
            for name in queues:
                channel: Any = conn.channel()
                try:
                    # Declared first: kombu's virtual transports (Redis) delete only the bindings
                    # this connection knows of, and would leave the run's binding keys behind.
                    queue = self.app.amqp.queues[name].bind(channel)
                    queue.declare()
                    queue.delete()
                except ChannelError:
                    pass  # not on this broker (never declared, or already gone)
                finally:
                    channel.close()
            for name in sorted(exchanges):
                channel = conn.channel()
                try:
                    channel.exchange_delete(name)
                except (ChannelError, KeyError):
                    pass  # never declared (kombu's virtual transports raise KeyError for that)
                finally:
                    channel.close()

    def _delete_results(self) -> None:
        """Delete what the run stored: on Redis every key under its namespace (results, kombu's
        bindings and reply lists), in a database the rows of its tasks. Embedded brokers go whole."""
        if self.broker.embedded or self._endpoints is None:
            return
        external = self.config.worker == "external"
        delete_run_keys(
            [self._endpoints.broker_url, self._endpoints.result_backend], self.ns.prefix, results_only=external
        )
        if self.backend_kind == "db":
            backend = self.app.backend
            for task_id in {e.task_id for e in self.timeline.events(kinds=["published"])}:
                backend.forget(task_id)

    def purge(self, queues: Iterable[str] | None = None) -> int:
        """Discard waiting messages from this run's queues; returns how many were discarded."""
        discarded = 0
        with self.app.connection_for_write() as conn:
            for queue in sorted(queues) if queues is not None else self.known_queues():
                if not self.ns.owns(queue):
                    raise HarnessError(f"refusing to purge {queue!r}: it does not belong to run {self.ns.run_id}")
                channel: Any = conn.channel()
                try:
                    discarded += int(channel.queue_purge(queue) or 0)
                except ChannelError:
                    pass  # never declared on this broker: nothing to purge
                finally:
                    channel.close()
        return discarded
