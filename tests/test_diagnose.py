from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from celery import chain, chord, group

from celery_sim.core.harness import Harness
from celery_sim.observe.diagnose import diagnose_pending, diagnose_result, diagnose_task
from celery_sim.scenarios.catalog import default_config
from demos.calling.tasks import add
from demos.routing.tasks import nightly_export

from .conftest import with_tasks


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

    def blocking() -> None:
        release.wait(10)

    with Harness(with_tasks({"test.blocking": blocking})) as h:
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


@pytest.fixture
def holding() -> Iterator[tuple[Harness, threading.Event]]:
    """A harness with task ``test.hold(value)``, which returns ``value`` once the event is set."""
    release = threading.Event()

    def hold(value: int) -> int:
        release.wait(10)
        return value

    with Harness(with_tasks({"test.hold": hold})) as h:
        try:
            yield h, release
        finally:
            release.set()


def _started(h: Harness, result: Any) -> None:
    assert h.timeline.wait_for(lambda e: e.task_id == result.id and e.kind == "started", timeout=5)


def test_a_group_cut_short_is_diagnosed_by_its_pending_member(holding: tuple[Harness, threading.Event]) -> None:
    h, release = holding
    hold, quick = h.app.tasks["test.hold"], h.app.tasks["demos.canvas.double"]
    result = group(hold.s(1), quick.s(2))()
    _started(h, result.results[0])
    result.results[1].get(timeout=5)
    text = diagnose_result(h, result)
    assert text.startswith(f"group {result.id}: 1 of 2 member(s) not ready: 'test.hold' is still running on main@")
    release.set()
    assert result.get(timeout=5) == [1, 4]


def test_a_chain_cut_short_names_the_step_it_waits_for(holding: tuple[Harness, threading.Event]) -> None:
    h, release = holding
    result = chain(h.app.tasks["test.hold"].s(3), h.app.tasks["demos.canvas.double"].s())()
    assert result.parent is not None
    _started(h, result.parent)
    text = diagnose_result(h, result)
    assert text.startswith(f"chain step {result.id} is not published yet: it waits for the step before it; ")
    assert "'test.hold' is still running on main@" in text
    assert "never published" not in text
    release.set()
    assert result.get(timeout=5) == 6


def test_a_chord_cut_short_counts_the_header_results_its_callback_waits_for(
    holding: tuple[Harness, threading.Event],
) -> None:
    h, release = holding
    hold, quick = h.app.tasks["test.hold"], h.app.tasks["demos.canvas.double"]
    result = chord([hold.s(1), quick.s(2), quick.s(3)])(h.app.tasks["demos.canvas.collect"].s())
    header = result.parent
    assert header is not None
    _started(h, header.results[0])
    header.results[1].get(timeout=5)
    header.results[2].get(timeout=5)
    text = diagnose_result(h, result)
    assert text.startswith(f"the chord callback {result.id} is not published yet: it waits for 1 of 3 header result(s)")
    assert "'test.hold' is still running on main@" in text
    release.set()
    assert result.get(timeout=5) == [1, 4, 6]


def test_a_task_queued_behind_busy_slots_names_what_occupies_them() -> None:
    release = threading.Event()

    def hold() -> None:
        release.wait(10)

    with Harness(with_tasks({"test.hold": hold}, concurrency=1)) as h:
        try:
            first = h.app.tasks["test.hold"].delay()
            _started(h, first)
            second = h.app.tasks["demos.calling.add"].delay(1, 1)
            h.timeline.wait_for(lambda e: e.task_id == second.id and e.kind == "received", timeout=5)
            text = diagnose_task(h, second.id)
            assert "has not started it: all pool slots busy" in text
            assert f"running: 'test.hold' {first.id}" in text
        finally:
            release.set()
        second.get(timeout=5)
