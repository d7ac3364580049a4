"""The fidelity matrix: the catalog on every reachable broker, and whether the verdicts agree.

A scenario agrees across brokers when it passes on each, or is skipped where it declares it is
not run (``skip_on``). A broker where it passes by checking what that broker does differently
(``differs_on``) is marked as a declared difference. Anything else (a failure, a timeout, an
undeclared skip) is an undeclared difference: embedded and real verdicts do not match.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from celery_sim.core.brokers import DEFAULT_AMQP_URL, DEFAULT_REDIS_URL, mask_url, resolve_broker
from celery_sim.errors import BrokerError
from celery_sim.scenarios.runner import RunReport
from celery_sim.scenarios.scenario import Scenario, ScenarioResult, Status

__all__ = ["DEFAULT_AMQP_URL", "DEFAULT_REDIS_URL", "Column", "Matrix", "matrix_brokers"]


@dataclass(frozen=True)
class Column:
    """One broker of the matrix: its kind (memory, fakeredis, redis, amqp), where, and whether reachable."""

    kind: str
    broker: str
    unreachable: str | None = None

    @property
    def label(self) -> str:
        return self.kind if self.kind == self.broker else f"{self.kind} ({mask_url(self.broker)})"


def matrix_brokers(redis_url: str | None = None, amqp_url: str | None = None) -> list[Column]:
    """memory, fakeredis, and the real Redis and RabbitMQ (each marked unreachable if it is)."""
    columns = [Column("memory", "memory"), Column("fakeredis", "fakeredis")]
    for url in (
        redis_url or os.environ.get("CELERY_SIM_REDIS_URL", DEFAULT_REDIS_URL),
        amqp_url or os.environ.get("CELERY_SIM_AMQP_URL", DEFAULT_AMQP_URL),
    ):
        broker = resolve_broker(url)
        try:
            broker.preflight(timeout=3)
        except BrokerError as exc:
            columns.append(Column(broker.name, url, unreachable=str(exc)))
        else:
            columns.append(Column(broker.name, url))
    return columns


def _why(result: ScenarioResult) -> str:
    """The diagnosis, else each failed check as ``name: expected E, observed O``."""
    if result.diagnosis:
        return mask_url(result.diagnosis)
    failed = [f"{c.name}: expected {c.expected!r}, observed {c.observed!r}" for c in result.checks if not c.passed]
    return mask_url("; ".join(failed)) or "no failed check recorded"


@dataclass
class Matrix:
    """Results of the catalog per broker column; built by :meth:`run`."""

    columns: list[Column]
    scenarios: list[Scenario]
    reports: dict[str, RunReport] = field(default_factory=dict)

    @classmethod
    def run(
        cls,
        columns: Sequence[Column],
        scenarios: Sequence[Scenario],
        run_one: Callable[[Column, Sequence[Scenario]], RunReport],
    ) -> Matrix:
        """Run ``scenarios`` on each reachable column with ``run_one`` (one broker after another)."""
        matrix = cls(list(columns), list(scenarios))
        for column in columns:
            if column.unreachable is None:
                matrix.reports[column.broker] = run_one(column, scenarios)
        return matrix

    def result(self, column: Column, name: str) -> ScenarioResult | None:
        report = self.reports.get(column.broker)
        return next((r for r in report.results if r.name == name), None) if report else None

    def agrees(self, item: Scenario, column: Column) -> bool | None:
        """Whether ``item``'s verdict on ``column`` is the expected one (None: not run there)."""
        result = self.result(column, item.name)
        if result is None:
            return None
        if result.status is Status.PASSED:
            return True
        return result.status is Status.SKIPPED and column.kind in item.skip_on

    def undeclared(self) -> list[str]:
        """Each verdict that differs without being declared, as ``scenario on broker: status (why)``."""
        found = []
        for item in self.scenarios:
            for column in self.columns:
                if self.agrees(item, column) is False:
                    result = self.result(column, item.name)
                    assert result is not None
                    found.append(f"{item.name} on {column.label}: {result.status.value} ({_why(result)})")
        return found

    @property
    def ok(self) -> bool:
        return not self.undeclared() and not any(r.interrupted for r in self.reports.values())

    def to_json(self) -> dict[str, object]:
        return {
            "brokers": [
                {
                    "kind": c.kind,
                    "broker": mask_url(c.broker),
                    "unreachable": c.unreachable and mask_url(c.unreachable),
                    "duration_s": round(self.reports[c.broker].duration_s, 2) if c.broker in self.reports else None,
                }
                for c in self.columns
            ],
            "scenarios": [
                {
                    "name": item.name,
                    "cells": {
                        column.kind: self._cell_json(item, column)
                        for column in self.columns
                        if column.unreachable is None
                    },
                }
                for item in self.scenarios
            ],
            "undeclared_differences": self.undeclared(),
        }

    def _cell_json(self, item: Scenario, column: Column) -> dict[str, object]:
        result = self.result(column, item.name)
        return {
            "status": result.status.value if result else "not run",
            "declared_difference": item.differs_on.get(column.kind),
            "declared_skip": item.skip_on.get(column.kind),
            "agrees": self.agrees(item, column),
            "diagnosis": mask_url(result.diagnosis) if result and result.diagnosis else None,
        }
