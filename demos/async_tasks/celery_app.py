"""The async demo's Celery app: one queue, ``async``."""

from __future__ import annotations

import os

from celery import Celery

app = Celery(
    "async_tasks",
    broker=os.environ.get("ASYNC_BROKER_URL", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("ASYNC_RESULT_BACKEND", "redis://127.0.0.1:6379/0"),
    include=["demos.async_tasks.tasks"],
)
app.conf.update(task_default_queue="async", task_serializer="json", result_serializer="json", accept_content=["json"])
