"""The configuration every demo app shares; the harness applies it to each run's fresh app."""

from __future__ import annotations

import importlib

from celery import Celery

from celery_sim.core.namespace import Namespace
from demos.brokers.config import broker_queues
from demos.routing.config import routing_conf

#: Modules defining the demo tasks (imported before the app is finalized, as a worker's -A/include would).
TASK_MODULES = (
    "demos.calling.tasks",
    "demos.progress.tasks",
    "demos.routing.tasks",
    "demos.canvas.tasks",
    "demos.retries.tasks",
    "demos.timing.tasks",
    "demos.brokers.tasks",
    "demos.doctor.tasks",
    "demos.monitor.tasks",
)

#: Logical queues the main embedded worker consumes. Scenarios start their own workers for the
#: others (fast_queue, slow_queue, progress); reports_queue is consumed by nobody on purpose.
WORKER_QUEUES = ("default", "secretflow_queue", "web_queue")


def configure(app: Celery, ns: Namespace) -> None:
    for module in TASK_MODULES:
        importlib.import_module(module)
    conf = routing_conf(ns)
    conf["task_queues"] = [*conf["task_queues"], *broker_queues(ns)]
    # How long a prefork worker waits for the result of a killed pool process before it reports
    # WorkerLostError (Celery's default 10 s; broker.acks_late_redelivery kills one on purpose).
    conf["worker_lost_wait"] = 0.5
    app.conf.update(conf)


#: Declared skips with ``--result-backend rpc://``: Celery's rpc backend sends states to the caller
#: as messages and stores nothing (measured on Redis and RabbitMQ brokers).
RPC_NO_CHORDS = {"rpc": "Celery raises NotImplementedError: 'The \"rpc\" result backend does not support chords'"}
RPC_NO_STORE = {
    "rpc": "rpc:// stores nothing, so the demo's ledger (entries a task stores under their own keys and "
    "the caller reads back) cannot work"
}
