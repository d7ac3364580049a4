"""A real `celery worker` process (prefork) started by the harness: it runs tasks, reports them
through Celery's events, and is always reaped, leaving no process behind."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from celery_sim.core.harness import Harness
from celery_sim.errors import HarnessError
from celery_sim.scenarios.catalog import default_config
from demos.timing.tasks import sleep_for


def _processes_of(run_prefix: str) -> list[int]:
    """Pids whose command line names this run's worker (``-n main@csim-...``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if run_prefix.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_prefork_worker_process_runs_tasks_and_is_reaped() -> None:
    harness = Harness(default_config(broker="fakeredis", worker="process", concurrency=2, queues=("prefork",)))
    with harness:
        worker = harness.main_worker
        assert worker.kind == "process"
        result = sleep_for.apply_async(args=(0.01,), queue=harness.queue("prefork"))
        assert result.get(timeout=10) == 0.01
        pool = worker.pool_pids()  # type: ignore[union-attr]
        assert len(pool) == 2 and worker.pid not in pool
        kinds = harness.timeline.wait_for(lambda e: e.task_id == result.id and e.kind == "succeeded", timeout=5)
        assert kinds is not None, harness.timeline.kinds(result.id)
        assert harness.timeline.kinds(result.id)[:3] == ["published", "received", "started"]
        assert _processes_of(harness.ns.prefix)
        everyone = [worker.pid, *pool]
    assert _processes_of(harness.ns.prefix) == []
    for pid in everyone:
        assert not os.path.exists(f"/proc/{pid}") or b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower()


def test_a_worker_process_cannot_use_the_in_process_memory_broker() -> None:
    with pytest.raises(HarnessError, match="memory broker lives in this process"):
        Harness(worker="process").start()


def test_an_idle_worker_on_a_private_broker_is_killed_at_stop_a_busy_one_stops_warm() -> None:
    """Its warm shutdown would change nothing there; a task still running finishes first."""
    harness = Harness(default_config(broker="fakeredis", worker="process", concurrency=2, queues=("prefork",)))
    with harness:
        idle = harness.main_worker
        busy = harness.start_worker(["busy"], name="busy", concurrency=1, kind="process")
        running = sleep_for.apply_async(args=(0.5,), queue=harness.queue("busy"))
        started = harness.timeline.wait_for(lambda e: e.task_id == running.id and e.kind == "started", timeout=10)
        assert started is not None, harness.timeline.kinds(running.id)
    assert idle.returncode == -signal.SIGKILL  # type: ignore[union-attr]
    assert busy.returncode == 0  # type: ignore[union-attr]  # warm shutdown: it finished its task
    assert harness.timeline.first(running.id, "succeeded") is not None, harness.timeline.kinds(running.id)


@pytest.mark.real_broker
def test_an_idle_worker_on_a_shared_broker_stops_warm() -> None:
    """A shared broker keeps what a killed worker would leave (its reply queues): warm, always."""
    from .test_real_brokers import REAL_BROKERS, need

    need(REAL_BROKERS[0])
    harness = Harness(default_config(broker=REAL_BROKERS[0], worker="process", concurrency=1, queues=("prefork",)))
    with harness:
        worker = harness.main_worker
    assert worker.returncode == 0  # type: ignore[union-attr]
