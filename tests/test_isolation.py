"""Two runs in one process never see each other's messages, results or timeline events."""

from __future__ import annotations

from celery_sim.core.harness import Harness
from celery_sim.scenarios.catalog import default_config
from demos.calling.tasks import add
from demos.routing.tasks import nightly_export


def test_two_concurrent_runs_keep_their_messages_results_and_timelines_apart() -> None:
    with Harness(default_config()) as first, Harness(default_config()) as second:
        assert first.ns.run_id != second.ns.run_id
        # Queued on the first run, in a queue nobody consumes: the second run must not see it.
        first.app.set_current()
        stuck = nightly_export.delay()
        assert first.queue_size(first.queue("reports_queue")) == 1
        assert second.queue_size(second.queue("reports_queue")) == 0
        # Each run's task runs on its own worker and is recorded on its own timeline only.
        done_first = first.app.tasks[add.name].delay(1, 1)
        done_second = second.app.tasks[add.name].delay(2, 2)
        assert done_first.get(timeout=5) == 2
        assert done_second.get(timeout=5) == 4
        assert first.timeline.first(done_first.id, "received").hostname == first.main_worker.hostname
        assert second.timeline.first(done_second.id, "received").hostname == second.main_worker.hostname
        assert first.timeline.events(done_second.id) == []
        assert second.timeline.events(done_first.id) == []
        assert second.timeline.events(stuck.id) == []
        # Results live in each run's own store.
        assert second.app.AsyncResult(done_first.id).state == "PENDING"


def test_sequential_runs_start_clean() -> None:
    with Harness(default_config()) as first:
        nightly_export.delay()
        leftover_queue = first.queue("reports_queue")
        assert first.queue_size(leftover_queue) == 1
    with Harness(default_config()) as second:
        assert second.queue_size(second.queue("reports_queue")) == 0
        assert second.timeline.events() == []


def test_stopping_one_embedded_worker_keeps_the_countdown_tasks_of_another() -> None:
    """Celery 5.7's Consumer.on_close cancels every ETA entry in the process-wide
    ``scheduled_requests``: stopping one embedded worker cancelled another's countdown task."""
    with Harness(default_config()) as one, Harness(default_config()) as other:
        later = one.app.tasks[add.name].apply_async((1, 2), countdown=0.5)
        assert one.timeline.wait_for(lambda e: e.task_id == later.id and e.kind == "received", timeout=5)
        other.stop_workers([other.main_worker])  # while ``one`` holds the countdown task
        extra = one.start_worker(["default"], name="extra")
        one.stop_workers([extra])  # and a worker of the same run, as a scenario's worker stops
        assert later.get(timeout=5) == 3
