from __future__ import annotations

import logging
import threading

import pytest
from celery import Celery
from celery._state import _tls

from celery_sim.core.harness import Harness
from celery_sim.core.workers.thread import EmbeddedWorker, PromptTimer
from celery_sim.embedded import memory, results
from celery_sim.errors import HarnessError, WorkerError
from celery_sim.scenarios.catalog import default_config
from demos.calling.tasks import add
from demos.routing.tasks import nightly_export

from .conftest import with_tasks


def test_a_task_makes_a_round_trip_through_the_embedded_worker(harness: Harness) -> None:
    result = add.delay(20, 22)
    assert result.get(timeout=5) == 42
    assert harness.timeline.kinds(result.id) == ["published", "received", "started", "succeeded"]
    assert harness.timeline.first(result.id, "received").hostname == harness.main_worker.hostname


def test_ping_reaches_the_embedded_worker(harness: Harness) -> None:
    replies = harness.app.control.ping(timeout=2, limit=1)
    assert replies == [{harness.main_worker.hostname: {"ok": "pong"}}]


def test_stop_releases_threads_broker_state_results_and_current_app() -> None:
    previous = _tls.current_app
    threads_before = {t for t in threading.enumerate() if t.name.startswith("csim-")}
    h = Harness(default_config())
    h.start()
    assert _tls.current_app is h.app
    assert add.delay(1, 2).get(timeout=5) == 3
    assert h.ns.run_id in memory.live_vhosts()
    assert h.ns.run_id in results.live_stores()
    h.stop()
    assert _tls.current_app is previous
    assert memory.live_vhosts() == [] and results.live_stores() == []
    # csim-spawner lives as long as the process, by design (see celery_sim/spawn.py).
    left = {t for t in threading.enumerate() if t.name.startswith("csim-") and t.name != "csim-spawner"}
    assert sorted(t.name for t in left - threads_before) == []
    assert not h.running


def test_stop_twice_is_harmless() -> None:
    h = Harness(default_config())
    h.start()
    h.stop()
    h.stop()
    assert not h.running
    assert memory.live_vhosts() == [] and results.live_stores() == []
    with pytest.raises(HarnessError, match="not running"):
        _ = h.app


def test_a_clean_stop_logs_nothing_even_after_etas_and_retries(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="celery_sim"), Harness(default_config()) as h:
        assert add.apply_async((1, 2), countdown=0.01).get(timeout=5) == 3
        add.apply_async((1, 2), countdown=60)  # still scheduled when the harness stops
    assert [r.getMessage() for r in caplog.records if r.name.startswith("celery_sim")] == []
    assert not h.running


def test_the_worker_timer_stops_without_waiting_for_its_next_entry() -> None:
    # Celery's own Timer sleeps up to 1 s (worker_timer_precision) towards its next entry and
    # is not woken by stop(); a stop after any ETA task took ~1 s.
    timer = PromptTimer(max_interval=1.0)
    started = threading.Event()
    timer.call_after(0.0, started.set)  # run by the timer thread once it is in its loop
    timer.call_after(60.0, lambda: None)
    assert started.wait(5.0)
    stopper = threading.Thread(target=timer.stop)
    stopper.start()
    stopper.join(0.5)  # Celery's Timer: still asleep here (0.5 s < the 1 s sleep)
    assert not stopper.is_alive() and not timer.is_alive()


def test_a_harness_cannot_be_started_twice(harness: Harness) -> None:
    with pytest.raises(HarnessError, match="already started"):
        harness.start()


def test_the_app_is_not_reachable_before_start() -> None:
    with pytest.raises(HarnessError, match="not running"):
        _ = Harness(default_config()).app


def test_stop_purges_messages_nobody_consumed() -> None:
    with Harness(default_config()) as h:
        nightly_export.delay()
        nightly_export.delay()
        queue = h.queue("reports_queue")
        assert h.queue_size(queue) == 2
        state = memory.state_for(h.ns.run_id)
    assert state.message_count() == 0


def test_purge_refuses_queues_of_other_runs(harness: Harness) -> None:
    with pytest.raises(HarnessError, match="does not belong"):
        harness.purge(["csim-0ther.celery"])
    assert harness.purge(["celery"]) == 0  # your name for a queue: the run's own copy of it


def test_an_extra_worker_consumes_only_its_queues(harness: Harness) -> None:
    worker = harness.start_worker(["reports_queue"], name="reports")
    result = nightly_export.delay()
    result.get(timeout=5)
    assert harness.timeline.first(result.id, "received").hostname == worker.hostname
    assert harness.consumers_of(harness.queue("reports_queue")) == [worker.hostname]
    harness.stop_workers([worker])
    assert harness.consumers_of(harness.queue("reports_queue")) == []


def test_a_worker_that_cannot_connect_fails_to_start_with_the_cause() -> None:
    app = Celery("unreachable", broker="redis://127.0.0.1:1/0", set_as_current=False)
    app.conf.broker_connection_retry_on_startup = False
    app.conf.broker_connection_retry = False
    worker = EmbeddedWorker(app, hostname="w@unreachable", queues=["q"], concurrency=1)
    with pytest.raises(WorkerError, match=r"exited while starting.*(Connection refused|Error 111)"):
        worker.start(timeout=10)
    worker.stop(timeout=5)
    app.close()


def test_concurrency_below_one_is_refused() -> None:
    with pytest.raises(WorkerError, match="concurrency=0"):
        EmbeddedWorker(Celery(set_as_current=False), hostname="w@x", queues=["q"], concurrency=0)


def test_progress_reaches_the_timeline(harness: Harness) -> None:
    from demos.progress.tasks import process_items

    worker = harness.start_worker(["progress"], name="progress")
    result = process_items.apply_async(args=(3,), kwargs={"step_s": 0}, queue=harness.queue("progress"))
    result.get(timeout=5)
    harness.stop_workers([worker])
    progress = harness.timeline.events(result.id, ["progress"])
    assert [e.data["meta"] for e in progress] == [{"current": i, "total": 3} for i in (1, 2, 3)]


def test_a_requeued_message_is_marked_redelivered_where_celery_reads_it(harness: Harness) -> None:
    # kombu's virtual channel marks the stored payload's top level, which its Message never reads.
    from kombu import Connection, Queue

    name = harness.queue("redelivery-probe")
    with Connection(harness.app.conf.broker_url) as conn:
        queue = Queue(name).bind(conn.channel())
        queue.declare()
        conn.Producer().publish({"n": 1}, routing_key=name, declare=[queue])
        first = queue.get(no_ack=False)
        assert first is not None and not first.delivery_info.get("redelivered")
        first.requeue()
        second = queue.get(no_ack=False)
        assert second is not None
        assert second.delivery_info.get("redelivered") is True
        second.ack()
        queue.delete()


def test_a_stuck_pool_thread_is_diagnosed_and_the_harness_still_stops_within_its_bound() -> None:
    release = threading.Event()

    def stuck() -> None:
        release.wait(30)

    h = Harness(with_tasks({"test.stuck": stuck}, stop_timeout=0.5))
    h.start()
    try:
        result = h.app.tasks["test.stuck"].delay()
        assert h.timeline.wait_for(lambda e: e.task_id == result.id and e.kind == "started", timeout=5)
        with pytest.raises(WorkerError) as raised:
            h.stop()
        message = str(raised.value)
        assert f"runs 'test.stuck' {result.id} at " in message
        assert "test_harness.py:" in message and " stuck " in message  # where it is stuck: file:line function
        assert f"still running there: 'test.stuck' {result.id} started " in message
        assert not h.running
    finally:
        release.set()
        for thread in threading.enumerate():
            if thread.name.startswith(("csim-pool", "csim-worker")):
                thread.join(5)


def test_a_memory_harness_does_not_import_the_redis_backend_and_a_later_import_gets_the_per_thread_flag() -> None:
    """The embedded worker makes Celery's "get() would block" flag per thread in every module that
    reads it; the Redis backend (redis-py, kombu's transport, packaging: ~10 ms of a first start)
    is not imported for that, and when something imports it later it reads the per-thread flag."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from celery_sim.core.harness import Harness\n"
        "from celery_sim.scenarios.catalog import default_config\n"
        "with Harness(default_config(broker='memory')) as h:\n"
        "    assert 'celery.backends.redis' not in sys.modules, 'imported at start'\n"
        "    import celery.backends.redis as redis_backend\n"
        "    from celery_sim.core.workers import joinblock\n"
        "    assert redis_backend.task_join_will_block is joinblock.task_join_will_block\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr
