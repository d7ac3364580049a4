"""The harness: one object owning a run's Celery app, broker, workers and timeline."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from celery import Celery
from celery._state import _tls  # type: ignore[attr-defined]
from kombu.exceptions import ChannelError

from .brokers import Broker, Endpoints, mask_url, resolve_broker
from .errors import HarnessError, WorkerError
from .namespace import Namespace
from .recorder import Recorder, RecordingAMQP, RecordingTask
from .timeline import Timeline
from .worker import EmbeddedWorker

__all__ = ["Harness", "HarnessConfig"]

log = logging.getLogger(__name__)

Configure = Callable[[Celery, Namespace], None]


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
        self._workers: list[EmbeddedWorker] = []
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
        ns = self.ns
        app = _HarnessApp(
            ns.prefix,
            broker=endpoints.broker_url,
            backend=endpoints.result_backend,
            amqp=RecordingAMQP,
            task_cls=RecordingTask,
            set_as_current=False,
            fixups=[],
        )
        app.conf.update(
            task_default_queue=ns.queue("default"),
            control_exchange=ns.control_exchange,
            event_exchange=ns.event_exchange,
            accept_content=["json"],
            result_accept_content=["json"],
            task_serializer="json",
            result_serializer="json",
            worker_hijack_root_logger=False,
            worker_redirect_stdouts=False,
            broker_connection_retry_on_startup=False,
            **self.config.extra_conf,
        )
        if self.config.configure is not None:
            self.config.configure(app, ns)
        app.finalize(auto=True)
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
    def workers(self) -> tuple[EmbeddedWorker, ...]:
        return tuple(self._workers)

    @property
    def main_worker(self) -> EmbeddedWorker:
        if not self._workers:
            raise HarnessError("the harness has no worker; call start() first")
        return self._workers[0]

    def queue(self, name: str) -> str:
        """This run's name for logical queue ``name``."""
        return self.ns.queue(name)

    # -- workers -----------------------------------------------------------------------------

    def start_worker(self, queues: Sequence[str], *, name: str, concurrency: int = 1) -> EmbeddedWorker:
        """Start another embedded worker consuming logical ``queues``; it is stopped with the harness."""
        worker = EmbeddedWorker(
            self.app,
            hostname=f"{name}@{self.ns.prefix}",
            queues=[self.ns.queue(q) for q in queues],
            concurrency=concurrency,
            wake=self._endpoints.wake if self._endpoints else None,
            loglevel=self.config.worker_loglevel,
        )
        self._workers.append(worker)
        worker.start(self.config.start_timeout)
        return worker

    def stop_workers(self, workers: Sequence[EmbeddedWorker]) -> None:
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
