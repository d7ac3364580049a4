"""Every check catches the broken behaviour it is about: one mutation per scenario must fail it.

A mutation changes one thing of the demo app the scenario runs (a task option, a route, a setting,
a calling path), on a fresh harness; the scenario must then *fail* (not time out, not error) on
the check about that behaviour. One mutation per scenario runs by default; the rest with
``-m mutations_deep``. The canvas family's mutations live in tests/test_canvas.py (SABOTAGE).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from celery.app.control import Control

from celery_sim.core.harness import Harness
from celery_sim.embedded import memory
from celery_sim.scenarios.catalog import default_config, load_catalog
from celery_sim.scenarios.runner import Runner
from celery_sim.scenarios.scenario import ScenarioResult, Status
from celery_sim.tools import doctor
from demos.config import WORKER_QUEUES

from . import mutations

CATALOG = load_catalog()


@dataclass(frozen=True)
class Mutation:
    what: str
    #: The check that must fail, by the start of its name.
    check: str
    config: dict[str, Any] = field(default_factory=dict)
    #: Applied around the run (for what lives outside the app, such as the embedded transport).
    patch: Callable[[pytest.MonkeyPatch], None] | None = None


def annotate(task: str, **attrs: Any) -> dict[str, Any]:
    return {"extra_conf": {"task_annotations": {task: attrs}}}


def settings(**conf: Any) -> dict[str, Any]:
    return {"extra_conf": conf}


def _kombu_restore(monkeypatch: pytest.MonkeyPatch) -> None:
    from kombu.transport import virtual

    monkeypatch.setattr(memory.Channel, "_restore", virtual.Channel._restore)


MUTATIONS: dict[str, list[Mutation]] = {
    "calling.direct": [
        Mutation(
            "the task body runs in another thread",
            "ran in the calling thread",
            {"configure": mutations.body_in_another_thread},
        )
    ],
    "calling.apply": [
        Mutation(".apply() publishes instead", "returns an EagerResult", {"configure": mutations.apply_publishes})
    ],
    "calling.delay": [
        Mutation("task_always_eager=True", "returns an AsyncResult", settings(task_always_eager=True)),
        Mutation("task_always_eager=True", "ran on the main worker", settings(task_always_eager=True)),
    ],
    "calling.apply_async": [
        Mutation("the queue option is ignored", "delivered from queue", {"configure": mutations.queue_option_ignored})
    ],
    "calling.send_task": [
        Mutation("the misspelled name exists", "get() raises", {"configure": mutations.typo_registered})
    ],
    "calling.celery_call": [
        Mutation(
            "send_task runs the task in the caller",
            "the task was sent to the broker",
            {"configure": mutations.send_task_runs_locally},
        )
    ],
    "progress.states": [
        Mutation(
            "track_started=False",
            "caller saw each state (track_started=True gives STARTED)",
            annotate("demos.progress.process_items", track_started=False),
        )
    ],
    "routing.task_routes": [
        Mutation("no task_routes", "secretflow_job: routed to", {"configure": mutations.no_task_routes})
    ],
    "routing.worker_subsets": [
        Mutation(
            "quick_task routed to slow_queue",
            "every quick_task (fast_queue) ran on the fast worker",
            {"configure": mutations.quick_tasks_routed_to_slow_queue},
        )
    ],
    "routing.unconsumed_queue": [
        Mutation(
            "the main worker consumes reports_queue too",
            "get() does not return: the guard ends the wait",
            {"queues": (*WORKER_QUEUES, "reports_queue")},
        )
    ],
    "retries.manual": [
        Mutation("max_retries=1", "value after two retries", annotate("demos.retries.fetch_page", max_retries=1))
    ],
    "retries.autoretry": [
        Mutation(
            "max_retries=2",
            "attempts: the first call plus max_retries=3",
            {"configure": mutations.autoretry_gives_up_after_two},
        )
    ],
    "retries.backoff": [
        Mutation(
            "retry_backoff_max=64",
            "the jittered task runs with Celery's defaults",
            annotate("demos.retries.call_api_jittered", retry_backoff_max=64),
        ),
        Mutation(
            "retry_backoff_max=1",
            "the jittered task runs with Celery's defaults",
            annotate("demos.retries.call_api_jittered", retry_backoff_max=1),
        ),
    ],
    "retries.selective": [
        Mutation(
            "max_retries=0",
            "network errors are retried, then it succeeds",
            annotate("demos.retries.run_ai_task", max_retries=0),
        )
    ],
    "retries.max_exceeded": [
        Mutation(
            "max_retries=4 on the task relying on the default",
            "max_retries defaults to 3: four attempts",
            annotate("demos.retries.poll_default", max_retries=4),
        )
    ],
    "retries.idempotent": [
        Mutation(
            "the keyed task may not retry",
            "with an idempotency key: it succeeds after one retry",
            annotate("demos.retries.charge_once", max_retries=0),
        )
    ],
    "time.soft_limit": [
        Mutation(
            "soft_time_limit 0.3 -> 0.45",
            "prefork: interrupted at the soft limit",
            annotate("demos.timing.resize_images", soft_time_limit=0.45),
        )
    ],
    "time.hard_limit": [
        Mutation(
            "time_limit 0.4 -> 0.8",
            "prefork: killed at the hard limit",
            annotate("demos.timing.crunch_numbers", time_limit=0.8),
        ),
        Mutation(
            "time_limit 0.4 -> 0.6",
            "prefork: killed at the hard limit",
            annotate("demos.timing.crunch_numbers", time_limit=0.6),
        ),
    ],
    "time.client_timeout": [
        Mutation(
            "the report is ready at once",
            "the caller gets celery.exceptions.TimeoutError",
            {"configure": mutations.report_returns_at_once},
        )
    ],
    "time.countdown_eta": [
        Mutation(
            "countdown and eta are ignored",
            "countdown=0.3: started 0.3 s after sending",
            {"configure": mutations.countdown_and_eta_ignored},
        )
    ],
    "time.expires": [
        Mutation(
            "expires is ignored",
            "expired task: the caller gets TaskRevokedError",
            {"configure": mutations.expires_ignored},
        )
    ],
    "time.expires_prefetched": [
        Mutation(
            "expires is ignored",
            "prefork: the expired task is discarded when a slot frees",
            {"configure": mutations.expires_ignored},
        )
    ],
    "time.rate_limit": [
        Mutation(
            "no rate limit",
            "one worker: starts spaced by the limit",
            annotate("demos.timing.send_email", rate_limit=None),
        )
    ],
    "time.revoke": [
        Mutation(
            "revoke sends nothing",
            "the worker acknowledged the revoke",
            patch=lambda mp: mp.setattr(Control, "revoke", lambda *args, **kwargs: []),
        )
    ],
    "beat.schedules": [
        Mutation(
            "the app's timezone is Europe/Paris",
            "crontab(hour=2, minute=0): next due at 02:00 UTC",
            settings(timezone="Europe/Paris"),
        )
    ],
    "broker.acks_late_redelivery": [
        Mutation(
            "acks_late=False",
            "acks_late=True, reject_on_worker_lost=True: redelivered after the kill and completed",
            annotate("demos.brokers.charge_card_safely", acks_late=False),
        )
    ],
    "broker.reject_requeue": [
        Mutation(
            "the transport does not mark a requeued message redelivered (kombu's virtual channel)",
            "the task completes on its redelivery",
            patch=_kombu_restore,
        )
    ],
    "doctor.unregistered": [
        Mutation("the name exists", "by id: the doctor names", {"configure": mutations.doctor_name_registered})
    ],
    "doctor.unconsumed_queue": [
        Mutation(
            "the main worker consumes reports_queue",
            "nobody consumes it: the doctor names",
            {"queues": (*WORKER_QUEUES, "reports_queue")},
        )
    ],
    "doctor.scheduled_revoked": [
        Mutation(
            "the doctor does not look inside the workers",
            "countdown=600: the doctor names",
            patch=lambda mp: mp.setattr(doctor._Exam, "in_worker", lambda self: None),
        )
    ],
    "doctor.reserved_active": [
        Mutation(
            "inspect reserved answers nothing",
            "the task behind it: the doctor names",
            patch=mutations.doctor_reserved_empty,
        )
    ],
    "doctor.expired": [
        Mutation(
            "a revoke's reason is not read",
            "expires in the past: the doctor names",
            patch=lambda mp: mp.setattr(doctor, "TaskRevokedError", type("Never", (Exception,), {})),
        )
    ],
    "doctor.result_settings": [
        Mutation(
            "the workers' settings are not compared",
            "client reading another backend: the doctor names",
            patch=lambda mp: mp.setattr(doctor._Exam, "_settings_mismatch", lambda self: None),
        )
    ],
    "doctor.no_worker": [
        Mutation(
            "a worker answers ping",
            "no worker: the doctor names",
            patch=lambda mp: mp.setattr(Control, "ping", lambda *a, **k: [{"ghost@nowhere": {"ok": "pong"}}]),
        )
    ],
    "monitor.events": [
        Mutation(
            "the worker sends no task-started",
            "succeeds: the worker's events",
            patch=mutations.no_task_started_event,
        )
    ],
    "monitor.inspect_control": [
        Mutation(
            "add_consumer sends nothing",
            "add_consumer: acknowledged",
            patch=lambda mp: mp.setattr(Control, "add_consumer", lambda *args, **kwargs: []),
        ),
        Mutation(
            "the worker acknowledges a rate limit but keeps its old buckets",
            "rate_limit 20/s",
            patch=mutations.rate_limit_not_applied,
        ),
    ],
    "demo.sending": [
        Mutation(
            "hello_task routed to web_queue", "routed to secretflow_queue", patch=mutations.sending_hello_to_web_queue
        ),
        Mutation("execute_task does not validate its params", "bad params", patch=mutations.sending_without_validation),
    ],
    "demo.learning.basic": [
        Mutation("update_state never called", "its progress", patch=mutations.learning_progress_silent),
    ],
    "demo.learning.canvas": [
        Mutation("add subtracts", "chain(add(2, 3), multiply(4))", patch=mutations.learning_add_subtracts),
    ],
    "demo.learning.retries": [
        Mutation("no exponential backoff", "exponential: retry countdowns", patch=mutations.learning_no_backoff),
    ],
    "demo.learning.real_world": [
        Mutation(
            "the email task does not retry", "email: refused twice", patch=mutations.learning_email_without_retries
        ),
    ],
    "demo.learning.beat": [
        Mutation(
            "the daily report at 03:00",
            "the daily report over 2 virtual days",
            patch=mutations.learning_report_at_three,
        ),
    ],
    "demo.ai_runner": [
        Mutation("a redelivered message generates again", "delivered twice", patch=mutations.ai_runner_not_idempotent),
    ],
    "demo.async_truth": [
        Mutation("the async task made sync", "the task fails", patch=mutations.async_native_made_sync),
    ],
    "demo.async_pattern": [
        Mutation("a new event loop per task", "loops made", patch=mutations.async_loop_per_task),
    ],
}

#: Scenarios with no mutation here, and why.
UNMUTATED = {
    "broker.priority": "on memory the check is 'first in, first out', which no setting changes",
    "broker.visibility_timeout": "runs on Redis brokers only (declared skipped on memory)",
    "broker.connection_loss": "its subject, kombu's reconnection, has no setting that fails it in one check",
}


def run(name: str, mutation: Mutation, monkeypatch: pytest.MonkeyPatch) -> ScenarioResult:
    if mutation.patch is not None:
        mutation.patch(monkeypatch)
    (result,) = Runner(lambda: Harness(default_config(**mutation.config))).run(CATALOG.select([name])).results
    return result


def _explain(result: ScenarioResult) -> str:
    failed = [f"{c.name}: expected {c.expected!r}, observed {c.observed!r}" for c in result.checks if not c.passed]
    return f"{result.name} {result.status.value}: {result.diagnosis or ''} {failed}"


def _assert_caught(result: ScenarioResult, mutation: Mutation) -> None:
    assert result.status is Status.FAILED, _explain(result)
    failed = [c.name for c in result.checks if not c.passed]
    assert any(name.startswith(mutation.check) for name in failed), _explain(result)


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_the_first_mutation_of_each_scenario_fails_the_check_about_it(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    mutation = MUTATIONS[name][0]
    _assert_caught(run(name, mutation, monkeypatch), mutation)


DEEP = [(name, index) for name, items in sorted(MUTATIONS.items()) for index in range(1, len(items))]


@pytest.mark.mutations_deep
@pytest.mark.parametrize(("name", "index"), DEEP, ids=[f"{n}-{i}" for n, i in DEEP])
def test_every_further_mutation_fails_the_check_about_it(
    name: str, index: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    mutation = MUTATIONS[name][index]
    _assert_caught(run(name, mutation, monkeypatch), mutation)


def test_every_scenario_has_a_mutation_or_a_stated_reason() -> None:
    from .test_canvas import SABOTAGE

    covered = set(MUTATIONS) | set(SABOTAGE) | set(UNMUTATED)
    assert sorted(s.name for s in CATALOG.all() if s.name not in covered) == []
    assert not set(MUTATIONS) & set(SABOTAGE)
