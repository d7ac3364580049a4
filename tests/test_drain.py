"""drain(): wait for all of a run's work, re-raise the first task error as itself, diagnose a hang."""

from __future__ import annotations

import pytest
from celery import chain, chord, group
from celery.exceptions import NotRegistered

from celery_sim.core.drain import DrainTimeout
from celery_sim.core.harness import Harness
from demos.calling.tasks import add
from demos.canvas.tasks import collect, double, fail
from demos.retries.tasks import fetch_page
from demos.routing.tasks import nightly_export


def test_drain_waits_for_chains_chords_etas_and_retries(harness: Harness) -> None:
    with harness.time_scale(0.001):
        retried = fetch_page.delay("https://example.com", failures=2)  # two retries, 30 s each
    later = add.apply_async((1, 2), countdown=0.05)
    steps = chain(add.s(1, 1), double.s(), double.s())()
    joined = chord([add.s(i, i) for i in range(3)], collect.s())()
    harness.drain(timeout=10)
    for result in (retried, later, steps, joined):
        assert result.ready(), result
    assert (later.result, steps.result, joined.result) == (3, 8, [0, 2, 4])
    assert harness.timeline.attempts(retried.id) == [0, 1, 2]


def test_drain_reraises_the_first_task_error_as_its_own_exception(harness: Harness) -> None:
    group(add.s(1, 1), fail.s("bad input"))()
    with pytest.raises(ValueError, match="bad input"):
        harness.drain(timeout=5)


def test_drain_reraises_an_unregistered_task_as_notregistered(harness: Harness) -> None:
    harness.app.send_task("demos.no_such_task", queue=harness.queue("default"))
    with pytest.raises(NotRegistered):
        harness.drain(timeout=5)


def test_drain_without_fail_fast_returns_when_failed_tasks_have_ended(harness: Harness) -> None:
    failing = fail.delay("expected")
    harness.drain(timeout=5, fail_fast=False)
    assert failing.state == "FAILURE"


def test_a_task_nobody_consumes_makes_drain_time_out_with_the_diagnosis(harness: Harness) -> None:
    stuck = nightly_export.delay()
    with pytest.raises(DrainTimeout) as raised:
        harness.drain(timeout=0.2)
    assert raised.value.pending == [stuck.id]
    assert "no worker consumes queue 'reports_queue'" in str(raised.value)


def test_a_timeout_that_is_not_positive_is_refused(harness: Harness) -> None:
    with pytest.raises(ValueError, match="give a positive number of seconds"):
        harness.drain(timeout=0)
