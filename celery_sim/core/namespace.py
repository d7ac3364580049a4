"""Names private to one run, so that runs sharing a broker never touch each other's queues."""

from __future__ import annotations

import copy
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from celery.app.routes import Router
from kombu import Queue

__all__ = ["Namespace", "NamespacedRouter", "namespace_conf", "namespaced_queue"]


@dataclass(frozen=True)
class Namespace:
    """Maps a scenario's logical queue names (``web_queue``) to this run's (``csim-1a2b3c4d.web_queue``)."""

    run_id: str = field(default_factory=lambda: secrets.token_hex(4))

    @cached_property
    def prefix(self) -> str:
        return f"csim-{self.run_id}"

    @cached_property
    def _owned(self) -> str:  # every publish asks owns() a few times
        return self.prefix + "."

    def queue(self, name: str) -> str:
        """This run's name for logical queue ``name`` (a name of this run's already: unchanged)."""
        return name if self.owns(name) else f"{self.prefix}.{name}"

    def logical(self, name: str) -> str:
        """The logical name of queue ``name`` (unchanged if it is not this run's)."""
        return name.removeprefix(self._owned)

    def owns(self, name: str) -> bool:
        return name.startswith(self._owned)

    @property
    def control_exchange(self) -> str:
        return f"{self.prefix}.control"

    @property
    def event_exchange(self) -> str:
        # Not "<prefix>.events": a queue the app calls "events" is "<prefix>.events", and its
        # direct exchange of that name would clash with the (topic) event exchange.
        return f"{self.prefix}.celeryev"


def _exchange(ns: Namespace, exchange: Any) -> Any:
    """This run's copy of ``exchange`` (a name or an Exchange); the default exchange ("") stays."""
    if exchange is None:
        return None
    if isinstance(exchange, str):
        return exchange if not exchange or ns.owns(exchange) else ns.queue(exchange)
    name = str(exchange.name or "")
    if not name or ns.owns(name):
        return exchange
    found = copy.copy(exchange)
    found.name = ns.queue(name)
    return found


def namespaced_queue(ns: Namespace, queue: Queue) -> Queue:
    """This run's copy of ``queue``: its name and exchange namespaced; its routing key too when it
    is the queue's name (as in the queues Celery makes, and for the default exchange)."""
    if ns.owns(str(queue.name)):
        return queue
    found: Queue = copy.copy(queue)
    found.name = ns.queue(str(queue.name))
    found.exchange = _exchange(ns, queue.exchange)
    if queue.routing_key == queue.name:
        found.routing_key = found.name
    bindings = [copy.copy(b) for b in queue.bindings or ()]
    for binding in bindings:
        binding.exchange = _exchange(ns, binding.exchange)
    found.bindings = set(bindings)  # type: ignore[assignment]  # kombu keeps a set; its stubs say Sequence
    return found


class NamespacedRouter(Router):
    """Celery's router; every destination it expands is this run's copy of the queue named."""

    ns: Namespace

    def expand_destination(self, route: Any) -> Any:
        ns = self.ns
        if isinstance(route, str):
            route = ns.queue(route) if route and not ns.owns(route) else route
        elif isinstance(route, Mapping):
            route = dict(route)
            queue = route.get("queue")
            if isinstance(queue, Queue):
                route["queue"] = namespaced_queue(ns, queue)
            elif isinstance(queue, str) and queue and not ns.owns(queue):
                route["queue"] = ns.queue(queue)
            if "exchange" in route:
                route["exchange"] = _exchange(ns, route["exchange"])
        return super().expand_destination(route)


def _namespaced_queues(ns: Namespace, queues: Any) -> Any:
    if queues is None:
        return None
    if isinstance(queues, Mapping):
        queues = [q if isinstance(q, Queue) else Queue(name, **q) for name, q in queues.items()]
    return tuple(namespaced_queue(ns, q) for q in queues)


def namespace_conf(conf: Any, ns: Namespace) -> dict[str, Any]:
    """The settings that put an app's queues and exchanges in namespace ``ns`` (idempotent)."""
    default_queue = str(conf.task_default_queue or "celery")
    found: dict[str, Any] = {
        "task_default_queue": default_queue if ns.owns(default_queue) else ns.queue(default_queue),
        "control_exchange": ns.control_exchange,
        "event_exchange": ns.event_exchange,
    }
    if conf.get("task_default_exchange"):
        found["task_default_exchange"] = _exchange(ns, conf.task_default_exchange)
    if conf.get("task_queues"):
        found["task_queues"] = _namespaced_queues(ns, conf.task_queues)
    return found
