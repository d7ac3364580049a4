"""The runner's tasks. ``run_ai_text_generation`` updates its row and its progress chunk by chunk,
retries network errors (with backoff) but fails a ``ValueError`` at once, and is idempotent: a
redelivered message for a finished row generates nothing again."""

from __future__ import annotations

import os
import time
from typing import Any

from demos.ai_runner.celery_app import DEMO, GENERATE, URGENT, app
from demos.ai_runner.db import AITask, get_sync_db_session
from demos.ai_runner.generate import CHUNKS, chunks, network_failures

#: Seconds each chunk takes to "generate" (the model's work, so progress can be watched).
CHUNK_S = float(os.environ.get("AI_RUNNER_CHUNK_S", "0.01"))


class ModelUnavailable(ConnectionError):
    """The model server did not answer: a network error, worth retrying."""


def _update(row_id: str, **values: Any) -> AITask:
    with get_sync_db_session() as session:
        row = session.get(AITask, row_id)
        if row is None:
            raise ValueError(f"no task row {row_id!r} in the database")
        for key, value in values.items():
            setattr(row, key, value)
        return row


def already_done(row: AITask) -> bool:
    """The row's text was generated (by an earlier delivery of the same message)."""
    return row.status == "COMPLETED"


@app.task(
    name=GENERATE,
    bind=True,
    autoretry_for=(ConnectionError, TimeoutError),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=False,
    max_retries=3,
)
def run_ai_text_generation(self: Any, task_id: str, prompt: str, model: str) -> dict[str, Any]:
    with get_sync_db_session() as session:
        row = session.get(AITask, task_id)
        if row is None:
            raise ValueError(f"no task row {task_id!r} in the database")
        if already_done(row):  # a redelivered or repeated message: the work is done
            return {"id": task_id, "status": row.status, "text": row.result, "repeated": True}
        row.status, row.celery_id, row.attempts = "PROCESSING", self.request.id, row.attempts + 1
        attempt, generations = row.attempts, row.generations
    try:
        if self.request.retries < network_failures(prompt):
            raise ModelUnavailable(f"model server unreachable (attempt {attempt})")
        parts = chunks(prompt, model)
    except ValueError as exc:
        _update(task_id, status="FAILED", error=f"{type(exc).__name__}: {exc}")
        raise
    except ConnectionError as exc:
        final = self.request.retries >= self.max_retries
        _update(task_id, status="FAILED" if final else "PENDING", error=f"{type(exc).__name__}: {exc}")
        raise
    done: list[str] = []
    for i, part in enumerate(parts, 1):
        time.sleep(CHUNK_S)
        done.append(part)
        progress = i * 100 // CHUNKS
        _update(task_id, progress=progress, result=" ".join(done))
        self.update_state(state="PROGRESS", meta={"progress": progress, "chunks": i})
    row = _update(task_id, status="COMPLETED", progress=100, error=None, generations=generations + 1)
    return {"id": task_id, "status": row.status, "text": row.result, "repeated": False}


@app.task(name=DEMO)
def demo_task(x: int, y: int) -> int:
    return x + y


@app.task(name=URGENT)
def urgent_task(message: str) -> str:
    return f"urgent: {message}"
