from __future__ import annotations

import threading

from celery import Celery

from celery_sim.catalog import default_config
from celery_sim.diagnose import diagnose_pending, diagnose_task
from celery_sim.harness import Harness
from celery_sim.namespace import Namespace
from demos.calling.tasks import add
from demos.routing.tasks import nightly_export


def test_a_task_in_a_queue_nobody_consumes(harness: Harness) -> None:
    result = nightly_export.delay()
    assert diagnose_task(harness, result.id) == (
        "no worker consumes queue 'reports_queue': 'demos.routing.nightly_export' was routed there and waits "
        "(1 message(s) in the queue); start a worker with -Q reports_queue or change the route"
    )


def test_a_task_id_this_run_never_published(harness: Harness) -> None:
    assert "was never published by this run" in diagnose_task(harness, "0000")


def test_a_disabled_result_backend() -> None:
    with Harness(default_config(extra_conf={"result_backend": None})) as h:
        h.app.conf.result_backend = None
        h.app._local.__dict__.pop("backend", None)
        result = add.delay(1, 1)
        assert diagnose_task(h, result.id).startswith("result backend disabled")


def test_a_task_still_running() -> None:
    release = threading.Event()
    demo_configure = default_config().configure
    assert demo_configure is not None

    def configure(app: Celery, ns: Namespace) -> None:
        demo_configure(app, ns)

        def blocking() -> None:
            release.wait(10)

        app.task(name="test.blocking")(blocking)  # registered before the worker starts

    with Harness(default_config(configure=configure)) as h:
        try:
            result = h.app.tasks["test.blocking"].delay()
            assert h.timeline.wait_for(lambda e: e.task_id == result.id and e.kind == "started", timeout=5)
            assert "'test.blocking' is still running on main@" in diagnose_task(h, result.id)
        finally:
            release.set()
        result.get(timeout=5)


def test_a_task_waiting_for_its_eta(harness: Harness) -> None:
    result = add.apply_async((1, 1), countdown=30)
    assert harness.timeline.wait_for(lambda e: e.task_id == result.id and e.kind == "received", timeout=5)
    assert diagnose_task(harness, result.id).startswith(
        f"worker {harness.main_worker.hostname} holds 'demos.calling.add' until its ETA"
    )
    harness.app.control.revoke(result.id)


def test_pending_lists_only_unfinished_tasks_since_a_mark(harness: Harness) -> None:
    add.delay(1, 1).get(timeout=5)
    mark = harness.timeline.mark()
    done = add.delay(2, 2)
    stuck = nightly_export.delay()
    done.get(timeout=5)
    diagnosis = diagnose_pending(harness, mark)
    assert diagnosis == diagnose_task(harness, stuck.id)
    assert diagnose_pending(harness, harness.timeline.mark()) is None


def test_a_task_the_worker_ended_but_the_backend_says_retry(harness: Harness) -> None:
    # What a late RETRY write does (measured with db+sqlite): the final state is overwritten.
    mark = harness.timeline.mark()
    result = add.delay("two", 2)  # TypeError: FAILURE (a SUCCESS is never overwritten)
    assert result.get(timeout=5, propagate=False) is not None
    harness.timeline.wait_for(lambda e: e.task_id == result.id and e.kind == "failed", timeout=2)
    assert diagnose_pending(harness, mark) is None
    harness.app.backend.store_result(result.id, None, "RETRY")
    expected = (
        f"'demos.calling.add' failed on {harness.main_worker.hostname}, but the result backend says RETRY: "
        "a write of an earlier attempt (its RETRY) landed after the final one"
    )
    assert diagnose_task(harness, result.id).startswith(expected)
    assert (diagnose_pending(harness, mark) or "").startswith(expected)
