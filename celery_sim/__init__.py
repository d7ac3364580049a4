"""celery_sim: real Celery, runnable and provable in one command.

The public names are below; each is imported on first use, so that ``import celery_sim`` (and
``python -m celery_sim --help``) does not pay for importing Celery.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BrokerError",
    "CelerySimError",
    "Check",
    "Context",
    "DrainTimeout",
    "Event",
    "Harness",
    "HarnessConfig",
    "HarnessError",
    "MissingModuleError",
    "RunReport",
    "Runner",
    "ScenarioResult",
    "SkipScenario",
    "Status",
    "TaskExpectation",
    "Timeline",
    "UsageError",
    "WaitTimeout",
    "WorkerError",
    "diagnose_result",
    "drain",
    "scenario",
]

#: public name -> module defining it
_WHERE = {
    "BrokerError": "errors",
    "CelerySimError": "errors",
    "HarnessError": "errors",
    "MissingModuleError": "errors",
    "UsageError": "errors",
    "WorkerError": "errors",
    "Check": "scenarios.scenario",
    "Context": "scenarios.scenario",
    "ScenarioResult": "scenarios.scenario",
    "SkipScenario": "scenarios.scenario",
    "Status": "scenarios.scenario",
    "WaitTimeout": "scenarios.scenario",
    "scenario": "scenarios.scenario",
    "RunReport": "scenarios.runner",
    "Runner": "scenarios.runner",
    "DrainTimeout": "core.drain",
    "drain": "core.drain",
    "Harness": "core.harness",
    "HarnessConfig": "core.harness",
    "TaskExpectation": "core.expect",
    "Event": "observe.timeline",
    "Timeline": "observe.timeline",
    "diagnose_result": "observe.diagnose",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'celery_sim' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
