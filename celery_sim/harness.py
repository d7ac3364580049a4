"""The harness: one object owning a run's Celery app, broker, workers and timeline."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from celery import Celery
from celery._state import _tls  # type: ignore[attr-defined]
from kombu.exceptions import ChannelError

from . import timewarp
from .appfactory import AppSpec, Configure, build_app
from .brokers import Broker, Endpoints, mask_url, resolve_broker
from .errors import HarnessError, WorkerError
from .events import EventRecorder
from .namespace import Namespace
from .process_worker import ProcessWorker
from .recorder import Recorder
from .timeline import Timeline
from .worker import EmbeddedWorker

__all__ = ["WORKER_KINDS", "Harness", "HarnessConfig", "Worker"]

WORKER_KINDS = ("thread", "process")
Worker = EmbeddedWorker | ProcessWorker

log = logging.getLogger(__name__)


class _HarnessApp(Celery):
    """Celery's app, remembering every result backend it creates (one per thread) for release at stop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.csim_backends: weakref.WeakSet[Any] = weakref.WeakSet()
        super().__init__(*args, **kwargs)

    def _get_backend(self) -> Any:
        backend = super()._get_backend()  # type: ignore[misc]  # Celery internal, not in the stubs
        self.csim_backends.add(backend)
        return backend


def _release_backend(backend: Any) -> None:
    """Close a Redis result backend's pub/sub so that results outliving the run do not reconnect.

    A Redis AsyncResult unsubscribes when it is garbage-collected; after the broker is gone that
    retries for 20 s. Celery skips the unsubscribe when the consumer has no pub/sub connection.
    """
    consumer = getattr(backend, "result_consumer", None)
    if consumer is not None and hasattr(consumer, "_pubsub"):
        consumer.stop()
        consumer._pubsub = None
        backend.client.connection_pool.disconnect()


@dataclass(frozen=True)
class HarnessConfig:
    """How to build a run: broker, the queues the main worker consumes, and the app's configuration.

    ``queues`` and every queue name given to the harness are logical names; the harness maps
    them into the run's namespace (see :class:`~celery_sim.namespace.Namespace`).
    """

    broker: str = "memory"
    result_backend: str | None = None
    concurrency: int = 4
    queues: tuple[str, ...] = ("default",)
    configure: Configure | None = None
    start_timeout: float = 10.0
    stop_timeout: float = 10.0
    worker_loglevel: str = "WARNING"
    run_id: str | None = None
    #: Delays of published messages are multiplied by this (see :mod:`celery_sim.timewarp`).
    time_scale: float = 1.0
    #: Where workers run: "thread" (embedded, in this process) or "process" (a ``celery worker``
    #: subprocess with the prefork pool; needs a broker other processes can reach).
    worker: str = "thread"
    extra_conf: dict[str, Any] = field(default_factory=dict)


class Harness:
    """Builds a fresh Celery app on a broker, runs an embedded worker, records a timeline.

    Use as a context manager; :meth:`stop` is bounded and always releases the broker state,
    the workers and Celery's current app, even after a failed start.
    """

    def __init__(self, config: HarnessConfig | None = None, **overrides: Any) -> None:
        base = config or HarnessConfig()
        self.config = HarnessConfig(**{**base.__dict__, **overrides}) if overrides else base
        self.broker: Broker = resolve_broker(self.config.broker, self.config.result_backend)
        self.ns = Namespace(self.config.run_id) if self.config.run_id else Namespace()
        self.timeline = Timeline()
        self._app: _HarnessApp | None = None
        self._endpoints: Endpoints | None = None
        self._recorder: Recorder | None = None
        self._workers: list[Worker] = []
        self._spec: AppSpec | None = None
        self._events: EventRecorder | None = None
        self._previous_app: Any = None
        self._started = False

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
        if self.config.worker != "thread" and self.broker.name == "memory":
            raise HarnessError(
                f"worker={self.config.worker!r} needs a broker other processes can reach; the memory broker "
                "lives in this process: use broker 'fakeredis' (embedded too) or a real broker's URL"
            )
        self._started = True
        try:
            self._endpoints = self.broker.open(self.ns.run_id)
            self._app = self._build_app(self._endpoints)
            self._recorder = Recorder(self._app, self.timeline)
            self._previous_app = _tls.current_app
            self._app.set_current()
            self.start_worker(self.config.queues, name="main", concurrency=self.config.concurrency)
        except BaseException:
            self.stop()
            raise

    def _build_app(self, endpoints: Endpoints) -> _HarnessApp:
        spec = AppSpec(
            broker_url=endpoints.broker_url,
            result_backend=endpoints.result_backend,
            run_id=self.ns.run_id,
            configure=self.config.configure,
            time_scale=self.config.time_scale,
            extra_conf=dict(self.config.extra_conf),
        )
        app = build_app(spec, app_cls=_HarnessApp)
        assert isinstance(app, _HarnessApp)
        self._spec = spec
        return app

    def stop(self) -> None:
        """Stop every worker, purge this run's queues and release the broker; safe to call twice."""
        errors: list[str] = []
        try:
            self.stop_workers(list(self._workers))
        except WorkerError as exc:
            errors.append(str(exc))
        if self._app is not None:
            try:
                self.purge()
            except Exception as exc:  # the broker may be gone; stopping must still finish
                log.warning("could not purge queues of run %s: %r", self.ns.run_id, exc)
            for backend in list(self._app.csim_backends):
                _release_backend(backend)
            self._app.close()
        if self._events is not None:
            self._events.stop(self.config.stop_timeout)
            self._events = None
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None
        if self._endpoints is not None:
            self._endpoints.close()
            self._endpoints = None
        if self._app is not None:
            if _tls.current_app is self._app:
                _tls.current_app = self._previous_app
            self._app = None
        if errors:
            raise WorkerError("; ".join(errors))

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
    def workers(self) -> tuple[Worker, ...]:
        return tuple(self._workers)

    @property
    def main_worker(self) -> Worker:
        if not self._workers:
            raise HarnessError("the harness has no worker; call start() first")
        return self._workers[0]

    @contextmanager
    def time_scale(self, scale: float) -> Iterator[None]:
        """Within the block, delays of messages published by this run are multiplied by ``scale``.

        Messages published in the block carry the scale, so their retries are compressed too,
        even after the block has ended (see :mod:`celery_sim.timewarp`).
        """
        conf = self.app.conf
        previous = conf.get(timewarp.CONF_KEY)
        conf[timewarp.CONF_KEY] = timewarp.validate_scale(scale)
        try:
            yield
        finally:
            conf[timewarp.CONF_KEY] = previous

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
        kind = kind or self.config.worker
        hostname = f"{name}@{self.ns.prefix}"
        run_queues = [self.ns.queue(q) for q in queues]
        worker: Worker
        if kind == "process":
            if self._spec is None:
                raise HarnessError("the harness is not running; call start() first")
            if self._events is None:
                self._events = EventRecorder(self.app, self.timeline)
                self._events.start(self.config.start_timeout)
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
                errors.append(str(exc))
        if errors:
            raise WorkerError("; ".join(errors))

    def consumers_of(self, queue: str) -> list[str]:
        """Hostnames of the running workers that consume ``queue`` (a run queue name)."""
        return [w.hostname for w in self._workers if w.running and queue in w.queues]

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
