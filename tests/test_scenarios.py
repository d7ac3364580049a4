"""Every scenario in the catalog passes on the embedded brokers, and its checks can fail."""

from __future__ import annotations

from typing import Any

import pytest

from celery_sim.catalog import default_config, load_catalog
from celery_sim.harness import Harness
from celery_sim.runner import Runner
from celery_sim.scenario import ScenarioResult, Status

CATALOG = load_catalog()


def run(names: list[str], **config: Any) -> list[ScenarioResult]:
    return Runner(lambda: Harness(default_config(**config))).run(CATALOG.select(names)).results


def explain(result: ScenarioResult) -> str:
    failed = [f"{c.name}: expected {c.expected!r}, observed {c.observed!r}" for c in result.checks if not c.passed]
    return f"{result.name} {result.status.value}: {result.diagnosis or ''} {failed}"


@pytest.mark.parametrize("name", [s.name for s in CATALOG.all() if "memory" not in s.skip_on])
def test_scenario_passes_on_the_memory_broker(name: str) -> None:
    (result,) = run([name])
    assert result.status is Status.PASSED, explain(result)
    assert result.checks


@pytest.mark.parametrize("name", [s.name for s in CATALOG.all() if "memory" in s.skip_on])
def test_a_scenario_declared_skipped_on_memory_says_why_and_runs_nothing(name: str) -> None:
    (result,) = run([name])
    assert result.status is Status.SKIPPED
    assert result.diagnosis == f"declared for memory: {CATALOG.select([name])[0].skip_on['memory']}"
    assert result.checks == []


def test_the_catalog_has_the_families_built_so_far() -> None:
    assert CATALOG.families() == ["calling", "progress", "routing", "canvas", "retries", "time", "beat", "broker"]


# Sabotage: the same scenarios on a set-up that behaves differently must report failed checks.


def failed_checks(result: ScenarioResult) -> list[str]:
    return [c.name for c in result.checks if not c.passed]


def test_calling_checks_fail_when_tasks_run_eagerly() -> None:
    (result,) = run(["calling.delay"], extra_conf={"task_always_eager": True})
    assert result.status is Status.FAILED
    assert "returns an AsyncResult" in failed_checks(result)
    assert "ran on the main worker" in failed_checks(result)


def test_progress_checks_fail_without_track_started() -> None:
    demo_configure = default_config().configure
    assert demo_configure is not None

    def untracked(app: Any, ns: Any) -> None:
        demo_configure(app, ns)
        app.finalize()
        app.tasks["demos.progress.process_items"].track_started = False

    (result,) = run(["progress.states"], configure=untracked)
    assert result.status is Status.FAILED
    assert failed_checks(result) == ["caller saw each state (track_started=True gives STARTED)"]


def test_routing_checks_fail_without_task_routes() -> None:
    demo_configure = default_config().configure
    assert demo_configure is not None

    def without_routes(app: Any, ns: Any) -> None:
        demo_configure(app, ns)
        app.conf.task_routes = {}

    (result,) = run(["routing.task_routes"], configure=without_routes)
    assert result.status is Status.FAILED
    assert "secretflow_job: routed to" in failed_checks(result)
    assert "render_page: routed to" in failed_checks(result)


def test_retry_checks_fail_when_the_policy_differs() -> None:
    demo_configure = default_config().configure
    assert demo_configure is not None

    def fewer_retries(app: Any, ns: Any) -> None:
        demo_configure(app, ns)
        app.finalize()
        app.tasks["demos.retries.fetch_page"].max_retries = 1

    (manual,) = run(["retries.manual"], configure=fewer_retries)
    assert manual.status is Status.FAILED
    assert {
        "value after two retries",
        "request.retries of each attempt counts up",
        "countdown Celery scheduled for each retry (s)",
    } <= set(failed_checks(manual))
