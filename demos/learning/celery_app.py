"""The learning guide's Celery app: four queues by kind of work, and its beat schedule."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from celery import Celery
from celery.schedules import crontab, schedule

app = Celery(
    "learning",
    broker=os.environ.get("LEARNING_BROKER_URL", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("LEARNING_RESULT_BACKEND", "redis://127.0.0.1:6379/0"),
    include=["demos.learning.tasks"],
)

#: The beat schedule's times: every 30 s, and daily at 02:00.
CLEANUP_EVERY_S = 30
DAILY_HOUR, DAILY_MINUTE = 2, 0
#: Where the scheduled tasks work (cleanup, reports) unless told otherwise.
WORK_DIR = os.environ.get("LEARNING_WORK_DIR", os.path.join(tempfile.gettempdir(), "celery-learning"))


def beat_schedule(folder: str = WORK_DIR, nowfun: Callable[[], datetime] | None = None) -> dict[str, dict[str, Any]]:
    """The guide's ``beat_schedule`` (``nowfun``: a clock for the schedules, as Celery's take one)."""
    return {
        "cleanup-temp-files": {
            "task": "learning.cleanup_temp_files",
            "schedule": schedule(timedelta(seconds=CLEANUP_EVERY_S), nowfun=nowfun, app=app),
            "args": (folder,),
            "kwargs": {"max_age_s": 60},
        },
        "daily-report": {
            "task": "learning.daily_report",
            "schedule": crontab(hour=DAILY_HOUR, minute=DAILY_MINUTE, nowfun=nowfun, app=app),
            "args": (folder,),
        },
    }


app.conf.update(
    task_default_queue="learning",
    task_routes={
        "learning.send_email": {"queue": "email"},
        "learning.process_image": {"queue": "media"},
        "learning.import_csv": {"queue": "data"},
        "learning.export_csv": {"queue": "data"},
        "learning.generate_report": {"queue": "data"},
    },
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_track_started=True,
    result_expires=3600,
    beat_schedule=beat_schedule(),
)
