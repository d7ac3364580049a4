"""Lends a Celery app to a run, and gives it back exactly as it was.

The run's broker, result backend and namespace are overlaid on the app's configuration; Celery's
caches built from the old settings (``amqp``, ``control``, ``events``, the connection pool, the
result backends) are set aside and rebuilt from the new ones; publishing and ``update_state`` are
recorded. :meth:`Adoption.restore` puts back the configuration, the caches and the current app.

The app's own queue names are namespaced idempotently (:class:`NamespacedRouter`): whatever
routes a task (``task_routes`` of any kind, ``task_queues``, ``task_default_queue``, a literal
``queue=``), the message goes to this run's copy of that queue. Task classes are not touched:
settings Celery copies onto a task when it binds (``from_config``: ``acks_late``, ...) keep the
values the app had.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from celery import Celery, states
from celery._state import _tls  # type: ignore[attr-defined]
from kombu import Queue
from kombu.utils.imports import symbol_by_name

from celery_sim.core import timewarp
from celery_sim.core.appfactory import AppSpec, build_app
from celery_sim.core.namespace import Namespace, namespace_conf
from celery_sim.core.workers.drainloop import driver_type
from celery_sim.errors import HarnessError
from celery_sim.observe.recorder import RecordingAMQPMixin, task_state_updated

__all__ = ["Adoption", "delete_queues", "instrument", "lend", "load_app", "release_backend", "routed_queues"]

#: Celery's cached helpers that read the settings the run overlays.
_CACHES = ("amqp", "control", "events")
#: States the worker writes itself: not progress.
_OWN_STATES = frozenset({states.SUCCESS, states.FAILURE, states.RETRY, states.REVOKED, states.STARTED})

_ADOPTED: weakref.WeakSet[Celery] = weakref.WeakSet()
#: How long kombu's Redis transport blocks in one BRPOP (its ``polling_interval`` transport option;
#: kombu's default: 1 s), unless the app sets it. A consumer closing with a BRPOP in flight reads
#: its reply first: every worker's stop on Redis waited up to 1 s (a scenario starting workers of
#: its own paid it each time: 24 s of the catalog's main lane on real Redis). 10 BRPOPs a second
#: per idle worker cost Redis and the worker next to nothing.
REDIS_POLLING_INTERVAL_S = 0.1

#: Claiming an app is check-then-add: two harnesses starting at once (a run's two lanes) must not both win.
_CLAIM = threading.Lock()


def instrument(
    app: Celery,
    ns: Namespace,
    backends: weakref.WeakSet[Any] | None = None,
    reply_queues: dict[str, Queue] | None = None,
) -> None:
    """Record ``app``'s publishing (with time compression) and ``update_state``, and route it into ``ns``.

    The app's cached ``amqp`` helper becomes one of a recording subclass of the app's own AMQP
    class (:class:`~celery_sim.observe.recorder.RecordingAMQPMixin`); each result backend the app creates
    reports the states tasks store themselves (progress, custom states) and joins ``backends``;
    an rpc backend notes in ``reply_queues`` the reply queue it declares for its thread.
    :meth:`Adoption.restore` undoes both.
    """
    base = symbol_by_name(str(app.amqp_cls))
    cls = (
        base
        if issubclass(base, RecordingAMQPMixin)
        else type(f"Recording{base.__name__}", (RecordingAMQPMixin, base), {})
    )
    amqp = cls(app=app)
    amqp.csim_ns = ns
    app.__dict__["amqp"] = amqp
    make = type(app)._get_backend.__get__(app)  # type: ignore[attr-defined]  # Celery internal

    def get_backend() -> Any:
        backend = make()
        if backends is not None:
            backends.add(backend)
        store = backend.store_result

        def store_result(task_id: str, result: Any, state: str, *args: Any, **kwargs: Any) -> Any:
            stored = store(task_id, result, state, *args, **kwargs)
            if state not in _OWN_STATES:
                name = getattr(kwargs.get("request"), "task", None)
                task_state_updated.send(sender=app, task_id=task_id, name=name, state=state, meta=result)
            return stored

        backend.store_result = store_result
        if reply_queues is not None:
            _note_reply_queue(backend, reply_queues)
        return backend

    app.__dict__["_get_backend"] = get_backend


def _note_reply_queue(backend: Any, reply_queues: dict[str, Queue]) -> None:
    """Note the reply queue of an rpc backend: named after the thread it was made for (a uuid).

    Celery declares it auto-delete, which RabbitMQ applies only once a consumer has come and gone;
    a thread that sends without waiting (``on_task_call`` declares it), or a worker answering a
    ``revoke`` (Celery 5.7 reads the task's state with ``get_state``, which declares the worker's
    own reply queue and reads it without consuming) leaves it on the broker until its
    ``x-expires``, a day (measured on RabbitMQ).
    """
    from celery.backends.rpc import RPCBackend

    if isinstance(backend, RPCBackend):
        binding = backend.binding  # named after the thread this backend was made for
        reply_queues[str(binding.name)] = binding


def delete_queues(app: Celery, queues: Iterable[Queue]) -> None:
    """Delete ``queues`` (with their messages and bindings) on ``app``'s broker, each that exists.

    Each is declared first, as given: kombu's virtual transports (Redis) delete only the bindings
    the connection knows of, and would leave binding keys behind. A channel each: a broker's
    error closes the channel it came on.
    """
    from kombu.exceptions import ChannelError

    with app.connection_for_write() as conn:
        for queue in queues:
            channel: Any = conn.channel()
            try:
                bound = queue.bind(channel)
                bound.declare()
                bound.delete()
            except ChannelError:
                pass  # not on this broker (never declared, or already gone)
            finally:
                channel.close()


def routed_queues(app: Celery) -> list[str]:
    """Every queue ``app`` routes its own tasks to, or declares, or defaults to (the run's names
    when the app is lent to a run, its own names otherwise)."""
    found = {str(app.conf.task_default_queue)}
    found.update(str(name) for name in app.amqp.queues)
    router = app.amqp.router
    for name, task in list(app.tasks.items()):
        if name.startswith("celery."):
            continue
        try:
            route = router.route({}, name, (), {}, task_type=type(task))
        except Exception:  # a router callable that needs real arguments: its queues stay unknown here
            continue
        queue = route.get("queue")
        if queue is not None:
            found.add(str(getattr(queue, "name", queue)))
    return sorted(found)


class Adoption:
    """The run's hold on one app: :meth:`apply` overlays and instruments, :meth:`restore` undoes."""

    def __init__(
        self,
        app: Celery,
        *,
        ns: Namespace,
        broker_url: str,
        result_backend: str,
        time_scale: float = 1.0,
        extra_conf: Mapping[str, Any] | None = None,
    ) -> None:
        self.app = app
        self.ns = ns
        self._overlay = {
            "broker_url": broker_url,
            "broker_read_url": None,
            "broker_write_url": None,
            "result_backend": result_backend,
            "task_always_eager": False,
            "worker_hijack_root_logger": False,
            "worker_redirect_stdouts": False,
            "broker_connection_retry_on_startup": False,
            timewarp.CONF_KEY: timewarp.validate_scale(time_scale),
            **dict(extra_conf or {}),
        }
        #: Every result backend the app creates during the run (one per thread), released at stop.
        self.backends: weakref.WeakSet[Any] = weakref.WeakSet()
        #: The rpc reply queues the app's threads declared (see :func:`_note_reply_queue`).
        self.reply_queues: dict[str, Queue] = {}
        self._saved: dict[str, Any] | None = None

    @classmethod
    def for_spec(cls, app: Celery, spec: AppSpec) -> Adoption:
        """The adoption of ``app`` for the run ``spec`` describes (the harness's, or a worker process's)."""
        return cls(
            app,
            ns=Namespace(spec.run_id),
            broker_url=spec.broker_url,
            result_backend=spec.result_backend,
            time_scale=spec.time_scale,
            extra_conf=spec.extra_conf,
        )

    def apply(self) -> None:
        app: Any = self.app  # Celery's private caches are not in its type stubs
        with _CLAIM:
            if app in _ADOPTED:
                raise HarnessError(
                    f"app {app.main!r} is already in a running harness: one harness per app at a time "
                    "(stop the other first, or give this one a factory that builds a fresh app)"
                )
            _ADOPTED.add(app)
        try:
            app.finalize(auto=True)  # tasks bind to the app's own settings, before the overlay
        except BaseException:
            _ADOPTED.discard(app)
            raise
        conf = app.conf
        self._saved = {
            "changes": dict(conf.changes),
            "dict": {key: app.__dict__[key] for key in (*_CACHES, "_get_backend") if key in app.__dict__},
            "pool": app._pool,
            "backend_cache": app._backend_cache,
            "local": app._local,
            "backend_cls": app.backend_cls,
            "current": _tls.current_app,
        }
        for key in (*_CACHES, "_get_backend"):
            app.__dict__.pop(key, None)
        app._pool = None
        app._backend_cache = None
        app._local = type(app._local)()
        app.backend_cls = None
        conf.update(self._overlay)
        options = dict(conf.result_backend_transport_options or {})
        options["global_keyprefix"] = f"{self.ns.prefix}."
        broker_options = dict(conf.broker_transport_options or {})
        if driver_type(app) == "redis":  # the transport the app's broker URL names, as the workers tell it
            broker_options.setdefault("polling_interval", REDIS_POLLING_INTERVAL_S)
        conf.update(
            namespace_conf(conf, self.ns),
            result_backend_transport_options=options,
            broker_transport_options=broker_options,
        )
        instrument(app, self.ns, self.backends, self.reply_queues)

    def restore(self) -> None:
        """Put back the app's settings, caches and current-app state; safe to call twice."""
        saved, self._saved = self._saved, None
        if saved is None:
            return
        # The run's connection pools are dropped, not closed: kombu shares one pool per broker URL
        # across the process (kombu.pools), so another app on the same broker may be using it.
        app: Any = self.app
        for key in (*_CACHES, "_get_backend"):
            app.__dict__.pop(key, None)
        app.__dict__.update(saved["dict"])
        app._pool = saved["pool"]
        app._backend_cache = saved["backend_cache"]
        app._local = saved["local"]
        app.backend_cls = saved["backend_cls"]
        conf = app.conf
        conf.changes.clear()
        conf.changes.update(saved["changes"])
        _tls.current_app = saved["current"]
        _ADOPTED.discard(app)


def release_backend(backend: Any) -> None:
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


def load_app(target: Any) -> Celery:
    """The app ``target`` names: an app, a ``"module:attr"`` path, or a factory returning one."""
    found = target
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        if not module or not attr:
            raise HarnessError(f"app={target!r}: give 'module:attr', e.g. 'shop.celery_app:app'")
        try:
            found = symbol_by_name(f"{module}:{attr}")
        except ModuleNotFoundError as exc:
            raise HarnessError(f"app={target!r}: module {exc.name!r} cannot be imported ({exc})") from exc
        except (ImportError, AttributeError) as exc:
            raise HarnessError(f"app={target!r} cannot be loaded: {exc}") from exc
    if not isinstance(found, Celery) and callable(found):
        found = found()
    if not isinstance(found, Celery):
        raise HarnessError(f"app={target!r} is a {type(found).__name__}, not a Celery app")
    return found


def lend(target: Any, spec: AppSpec) -> tuple[Celery, Adoption]:
    """The run's app, adopted for ``spec``'s run: the user's ``target`` (an app, a ``"module:attr"``
    path or a factory), with the modules of its ``include=`` / ``imports`` imported as a worker
    imports them at start; or, for None, one built from ``spec``."""
    app = build_app(spec) if target is None else load_app(target)
    if target is not None:
        app.loader.import_default_modules()
    adoption = Adoption.for_spec(app, spec)
    adoption.apply()
    return app, adoption
