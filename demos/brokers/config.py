"""Queues of the broker demo (logical names, mapped into each run's namespace)."""

from __future__ import annotations

from kombu import Exchange, Queue

from celery_sim.core.namespace import Namespace

#: RabbitMQ gives a queue priorities only when it is declared with x-max-priority (other
#: transports ignore the argument).
MAX_PRIORITY = 9


def broker_queues(ns: Namespace) -> list[Queue]:
    name = ns.queue("priority")
    return [
        Queue(name, Exchange(name, type="direct"), routing_key=name, queue_arguments={"x-max-priority": MAX_PRIORITY})
    ]
