"""The sending guide's Celery app, configured as its ``celeryconfig.py``: three queues, explicit routes."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Exchange, Queue

#: The guide's task names (its ``tasks/secretflow/`` package layout, as names only).
HELLO = "tasks.secretflow.hello.hello_task"
HEALTH = "tasks.secretflow.health_check"
EXECUTE = "tasks.secretflow.execute_task"

#: The guide's queues: queue name -> routing key.
QUEUES = {"secretflow_queue": "secretflow", "default": "default", "web_queue": "web_queue"}

app = Celery(
    "sending",
    broker=os.environ.get("SENDING_BROKER_URL", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("SENDING_RESULT_BACKEND", "redis://127.0.0.1:6379/0"),
    include=["demos.sending.tasks"],
)
app.conf.update(
    task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=key) for name, key in QUEUES.items()],
    task_default_queue="default",
    task_routes={
        HELLO: {"queue": "secretflow_queue", "routing_key": "secretflow"},
        HEALTH: {"queue": "secretflow_queue", "routing_key": "secretflow"},
        EXECUTE: {"queue": "secretflow_queue", "routing_key": "secretflow"},
    },
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_track_started=True,
    result_expires=3600,
)
