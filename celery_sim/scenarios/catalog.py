"""The catalog: which scenario families exist and the demo configuration they run with."""

from __future__ import annotations

import importlib
import sys

from celery_sim.core.harness import HarnessConfig
from celery_sim.errors import UsageError
from celery_sim.scenarios.families import FAMILIES
from celery_sim.scenarios.scenario import REGISTRY, Registry

__all__ = ["FAMILIES", "default_config", "load_catalog", "load_scenarios"]


def load_catalog() -> Registry:
    """The registry with every family's scenarios registered."""
    for module in FAMILIES.values():
        importlib.import_module(module)
    return REGISTRY


def load_scenarios(module: str) -> Registry:
    """The scenarios a user's module registers with ``@scenario`` (and only those)."""
    before = {s.name for s in REGISTRY.all()}
    was_imported = module in sys.modules
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise UsageError(f"--scenarios {module!r}: module {exc.name!r} cannot be imported ({exc})") from exc
    found = Registry()
    for item in REGISTRY.all():
        if item.name not in before or (was_imported and item.fn.__module__ == module):
            found.add(item)
    if not found.all():
        raise UsageError(
            f"--scenarios {module!r} registers no scenario: decorate functions with "
            "@celery_sim.scenario('family.case', 'what it shows')"
        )
    return found


def default_config(**overrides: object) -> HarnessConfig:
    """The harness configuration the catalog's scenarios expect (demo tasks, routes, worker queues)."""
    from demos.config import WORKER_QUEUES, configure

    return HarnessConfig(**{"configure": configure, "queues": WORKER_QUEUES, **overrides})  # type: ignore[arg-type]
