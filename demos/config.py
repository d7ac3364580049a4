"""The configuration every demo app shares; the harness applies it to each run's fresh app."""

from __future__ import annotations

import importlib

from celery import Celery

from celery_sim.namespace import Namespace
from demos.routing.config import routing_conf

#: Modules defining the demo tasks (imported before the app is finalized, as a worker's -A/include would).
TASK_MODULES = (
    "demos.calling.tasks",
    "demos.progress.tasks",
    "demos.routing.tasks",
    "demos.canvas.tasks",
    "demos.retries.tasks",
    "demos.timing.tasks",
)

#: Logical queues the main embedded worker consumes. Scenarios start their own workers for the
#: others (fast_queue, slow_queue, progress); reports_queue is consumed by nobody on purpose.
WORKER_QUEUES = ("default", "secretflow_queue", "web_queue")


def configure(app: Celery, ns: Namespace) -> None:
    for module in TASK_MODULES:
        importlib.import_module(module)
    app.conf.update(routing_conf(ns))


#: Measured: fakeredis stalls on messages a worker publishes (a chain's next step, a retry: it or
#: its result never arrives) or drops a connection, in a third to a half of the runs of the canvas
#: and retries families; on real Redis and RabbitMQ they pass every time (tests/test_real_brokers.py).
FAKEREDIS_STALLS = {
    "fakeredis": "fakeredis stalls on messages a worker publishes (chain steps, retries); passes on real Redis"
}
