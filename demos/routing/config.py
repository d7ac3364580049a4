"""The routing demo's configuration, in logical queue names (mapped into the run's namespace)."""

from __future__ import annotations

from typing import Any

from kombu import Exchange, Queue

from celery_sim.core.namespace import Namespace

#: task name -> route, as a guide's celeryconfig.py would write it.
ROUTES: dict[str, dict[str, str]] = {
    "demos.routing.secretflow_job": {"queue": "secretflow_queue", "routing_key": "secretflow"},
    "demos.routing.render_page": {"queue": "web_queue"},
    "demos.routing.quick_task": {"queue": "fast_queue"},
    "demos.routing.slow_report": {"queue": "slow_queue"},
    "demos.routing.nightly_export": {"queue": "reports_queue"},
    "demos.doctor.hold": {"queue": "doctor"},
}

#: queue name -> (exchange name, routing key).
QUEUES: dict[str, tuple[str, str]] = {
    "default": ("default", "default"),
    "secretflow_queue": ("secretflow_queue", "secretflow"),
    "web_queue": ("web_queue", "web_queue"),
    "fast_queue": ("fast_queue", "fast_queue"),
    "slow_queue": ("slow_queue", "slow_queue"),
    "reports_queue": ("reports_queue", "reports_queue"),
    "doctor": ("doctor", "doctor"),
}


def routing_conf(ns: Namespace) -> dict[str, Any]:
    """``task_queues`` and ``task_routes`` for a run, with every queue and exchange in its namespace."""
    queues = [
        Queue(
            ns.queue(name),
            Exchange(ns.queue(exchange), type="direct"),
            routing_key=ns.queue(key) if key == name else key,
        )
        for name, (exchange, key) in QUEUES.items()
    ]
    routes = {task: {**route, "queue": ns.queue(route["queue"])} for task, route in ROUTES.items()}
    return {"task_queues": queues, "task_routes": routes}
