"""The runner's Celery app: three queues, routed as in the guide; late acks (a redelivered task
must not generate twice: the task is idempotent)."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Exchange, Queue

GENERATE = "demos.ai_runner.run_ai_text_generation"
DEMO = "demos.ai_runner.demo_task"
URGENT = "demos.ai_runner.urgent_task"

app = Celery(
    "ai_runner",
    broker=os.environ.get("AI_RUNNER_BROKER_URL", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("AI_RUNNER_RESULT_BACKEND", "redis://127.0.0.1:6379/0"),
    include=["demos.ai_runner.tasks"],
)
app.conf.update(
    task_queues=[
        Queue(q, Exchange(q, type="direct"), routing_key=q) for q in ("ai_processing", "demo_tasks", "urgent")
    ],
    task_default_queue="demo_tasks",
    task_routes={GENERATE: {"queue": "ai_processing"}, DEMO: {"queue": "demo_tasks"}, URGENT: {"queue": "urgent"}},
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_track_started=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=3600,
)
