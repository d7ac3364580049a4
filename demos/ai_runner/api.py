"""The runner's HTTP API (FastAPI): create a task, read its status.

``POST /tasks`` validates the body, stores a row (PENDING), enqueues ``run_ai_text_generation`` and
answers 201 with the id; if enqueueing fails it still answers 201, and the row (FAILED) says why.
(A broker that refuses connections costs kombu's connection retries first: 2 s, measured; with
``broker_transport_options={"max_retries": 0}`` the failure comes in 0.13 s.)
``GET /tasks/{id}``: the stored status, the Celery state and the progress; 404 for an unknown id.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from celery import Celery
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from demos.ai_runner.celery_app import GENERATE
from demos.ai_runner.celery_app import app as celery_app
from demos.ai_runner.db import AITask, engine_for, init_db
from demos.ai_runner.generate import MODELS

__all__ = ["TaskIn", "create_app"]


class TaskIn(BaseModel):
    prompt: str = Field(min_length=1, max_length=4000)
    model: str = Field(default=MODELS[0], min_length=1, max_length=64)
    #: "urgent" goes to the urgent queue, as the guide routes its priority work.
    priority: Literal["normal", "urgent"] = "normal"


def create_app(database_url: str | None = None, celery: Celery | None = None) -> FastAPI:
    """The API on ``database_url`` (default ``AI_RUNNER_DATABASE_URL``), enqueueing through ``celery``
    (default the runner's app; pass another to send elsewhere)."""
    broker = celery or celery_app
    init_db(database_url)
    sessions = engine_for(database_url)[1]
    api = FastAPI(title="Async AI Task Runner", version="1.0")

    @api.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @api.post("/tasks", status_code=201)
    def create_task(body: TaskIn) -> dict[str, Any]:
        row_id, celery_id = str(uuid.uuid4()), str(uuid.uuid4())
        with sessions.begin() as session:
            session.add(AITask(id=row_id, prompt=body.prompt, model=body.model, status="PENDING", celery_id=celery_id))
        queue: dict[str, Any] = {"queue": "urgent"} if body.priority == "urgent" else {}
        try:
            # No connection retries: a broker that is down must not hold the request.
            broker.send_task(GENERATE, args=[row_id, body.prompt, body.model], task_id=celery_id, retry=False, **queue)
        except Exception as exc:
            with sessions.begin() as session:
                row = session.get(AITask, row_id)
                assert row is not None
                row.status, row.error = "FAILED", f"enqueue failed: {type(exc).__name__}: {exc}"
            return {"id": row_id, "status": "FAILED", "error": row.error}
        return {"id": row_id, "status": "PENDING", "celery_id": celery_id}

    @api.get("/tasks/{task_id}")
    def read_task(task_id: str) -> dict[str, Any]:
        with sessions() as session:
            row = session.get(AITask, task_id)
            if row is None:
                raise HTTPException(status_code=404, detail=f"no task {task_id!r}")
            found = row.to_json()
        found["celery_state"] = broker.AsyncResult(found["celery_id"]).state if found["celery_id"] else None
        return found

    return api
