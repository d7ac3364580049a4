"""Every scenario in the catalog passes on the embedded brokers, and its checks can fail."""

from __future__ import annotations

from typing import Any

import pytest

from celery_sim.core.harness import Harness
from celery_sim.scenarios.catalog import default_config, load_catalog
from celery_sim.scenarios.runner import Runner
from celery_sim.scenarios.scenario import ScenarioResult, Status

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
    assert CATALOG.families() == [
        "calling",
        "progress",
        "routing",
        "canvas",
        "retries",
        "time",
        "beat",
        "broker",
        "doctor",
        "monitor",
        "demo",
    ]


# Checks that fail when the behaviour breaks: tests/test_mutations.py (and SABOTAGE in tests/test_canvas.py).
