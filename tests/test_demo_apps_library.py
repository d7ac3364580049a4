"""The guides' apps tested through the library and the pytest plugin, as a user tests their own
app: real Celery on an in-process broker, each app's own task objects and queues."""

from __future__ import annotations

from pathlib import Path

import pytest
from celery import Celery, chord

from celery_sim import Harness


@pytest.fixture
def csim_app() -> Celery:  # the plugin's ``csim`` fixture runs this app
    from demos.sending.celery_app import app

    return app


def test_the_sending_app_with_the_plugin(csim: Harness, tmp_path: Path) -> None:
    from demos.sending import tasks
    from demos.sending.params import example_params

    hello = tasks.hello_task.delay("plugin")
    job = tasks.execute_task.delay("job-9", example_params(tmp_path))
    csim.drain(timeout=10)
    csim.expect(hello).ran_on("secretflow_queue").succeeded()
    assert hello.get(timeout=1).startswith("Hello, plugin!")
    assert job.get(timeout=1)["intersection_size"] == 3
    bad = tasks.execute_task.delay("job-10", {**example_params(tmp_path), "receiver": "carol"})
    with pytest.raises(Exception, match=r"params\.receiver:"):
        csim.drain(timeout=10)
    csim.expect(bad).failed("InvalidParams")


def test_the_learning_app_with_the_library() -> None:
    from demos.learning import tasks

    with Harness(app="demos.learning.celery_app:app", time_scale=0.001) as h:
        total = chord(tasks.square.s(i) for i in range(1, 5))(tasks.total.s())
        retried = tasks.exponential_retry.delay(2)
        h.drain(timeout=10)
        assert total.get(timeout=1) == 30
        h.expect(retried).retried(2).succeeded(3)


def test_the_ai_runner_task_with_the_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from demos.ai_runner import tasks
    from demos.ai_runner.db import AITask, dispose, get_sync_db_session, init_db

    url = f"sqlite:///{tmp_path}/ai.db"
    monkeypatch.setenv("AI_RUNNER_DATABASE_URL", url)
    init_db()
    try:
        with get_sync_db_session() as session:
            session.add(AITask(id="row-1", prompt="hello", model="demo-small"))
        with Harness(app="demos.ai_runner.celery_app:app") as h:
            result = tasks.run_ai_text_generation.delay("row-1", "hello", "demo-small")
            h.drain(timeout=10)
            h.expect(result).ran_on("ai_processing").succeeded()
        with get_sync_db_session() as session:
            row = session.get(AITask, "row-1")
            assert row is not None and (row.status, row.progress, row.generations) == ("COMPLETED", 100, 1)
    finally:
        dispose(url)
