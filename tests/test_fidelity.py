"""The fidelity matrix: embedded and real brokers give the same verdicts, but for declared differences."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from celery_sim.scenarios.matrix import Column, Matrix
from celery_sim.scenarios.runner import RunReport
from celery_sim.scenarios.scenario import Check, Scenario, ScenarioResult, Status

from .conftest import require_brokers

ALL_KINDS = ["memory", "fakeredis", "redis", "amqp"]


@pytest.mark.real_broker
@pytest.mark.timeout(600)
def test_every_scenario_has_the_same_verdict_on_every_broker_but_declared_differences(tmp_path: Path) -> None:
    out = tmp_path / "matrix.json"
    completed = subprocess.run(
        [sys.executable, "-m", "celery_sim", "matrix", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    data = json.loads(out.read_text())
    ran = [b["kind"] for b in data["brokers"] if not b["unreachable"]]
    if require_brokers():
        assert ran == ALL_KINDS, data["brokers"]
    elif ran != ALL_KINDS:
        pytest.skip(f"matrix ran on {ran} only: {data['brokers']}")
    assert data["undeclared_differences"] == [], completed.stdout[-4000:]
    assert completed.returncode == 0, completed.stdout[-4000:]
    for row in data["scenarios"]:
        for kind, cell in row["cells"].items():
            assert cell["agrees"], (row["name"], kind, cell)
            if cell["status"] == "skipped":
                assert cell["declared_skip"], (row["name"], kind)
    expires = next(r for r in data["scenarios"] if r["name"] == "time.expires")
    assert expires["cells"]["amqp"]["declared_difference"]
    assert "≠" in completed.stdout


def _scenario(name: str, **declared: dict[str, str]) -> Scenario:
    return Scenario(name, "", lambda ctx: None, None, declared.get("skip_on", {}), declared.get("differs_on", {}))


def _matrix(statuses: dict[str, dict[str, Status]], scenarios: list[Scenario]) -> Matrix:
    columns = [Column(kind, kind) for kind in statuses]
    matrix = Matrix(columns, scenarios)
    for kind, by_name in statuses.items():
        matrix.reports[kind] = RunReport(kind, [ScenarioResult(n, "", s, 0.0) for n, s in by_name.items()])
    return matrix


def test_a_failure_on_one_broker_is_an_undeclared_difference_naming_the_failed_check() -> None:
    matrix = _matrix(
        {"memory": {"a.x": Status.PASSED}, "redis": {"a.x": Status.FAILED}},
        [_scenario("a.x")],
    )
    failed = matrix.result(matrix.columns[1], "a.x")
    assert failed is not None
    failed.checks = [Check("ok", True, 1, 1), Check("members overlapped", False, True, False)]
    assert matrix.undeclared() == ["a.x on redis: failed (members overlapped: expected True, observed False)"]
    assert not matrix.ok


def test_declared_skips_and_differences_agree_but_an_undeclared_skip_does_not() -> None:
    scenarios = [
        _scenario("a.skipped", skip_on={"memory": "no priority there"}),
        _scenario("a.differs", differs_on={"amqp": "RabbitMQ drops it"}),
        _scenario("a.silent"),
    ]
    matrix = _matrix(
        {
            "memory": {"a.skipped": Status.SKIPPED, "a.differs": Status.PASSED, "a.silent": Status.SKIPPED},
            "amqp": {"a.skipped": Status.PASSED, "a.differs": Status.PASSED, "a.silent": Status.PASSED},
        },
        scenarios,
    )
    assert matrix.undeclared() == ["a.silent on memory: skipped (no failed check recorded)"]
    cells = {row["name"]: row["cells"] for row in matrix.to_json()["scenarios"]}  # type: ignore[union-attr]
    assert cells["a.differs"]["amqp"]["declared_difference"] == "RabbitMQ drops it"
    assert cells["a.skipped"]["memory"]["agrees"] is True


def test_an_unreachable_broker_is_left_out_with_its_reason() -> None:
    matrix = Matrix([Column("memory", "memory"), Column("redis", "redis://h:1/0", unreachable="refused")], [])
    data = matrix.to_json()
    assert data["brokers"][1]["unreachable"] == "refused"  # type: ignore[index]
