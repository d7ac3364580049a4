"""The catalog: which scenario families exist and the demo configuration they run with."""

from __future__ import annotations

import importlib

from .harness import HarnessConfig
from .scenario import REGISTRY, Registry

__all__ = ["FAMILIES", "default_config", "load_catalog"]

#: family -> module registering its scenarios (imported on demand, like kombu's transport table).
FAMILIES: dict[str, str] = {
    "calling": "demos.calling.scenarios",
    "progress": "demos.progress.scenarios",
    "routing": "demos.routing.scenarios",
    "canvas": "demos.canvas.scenarios",
    "retries": "demos.retries.scenarios",
    "time": "demos.timing.scenarios",
    "beat": "demos.timing.beat",
    "broker": "demos.brokers.scenarios",
}


def load_catalog() -> Registry:
    """The registry with every family's scenarios registered."""
    for module in FAMILIES.values():
        importlib.import_module(module)
    return REGISTRY


def default_config(**overrides: object) -> HarnessConfig:
    """The harness configuration the catalog's scenarios expect (demo tasks, routes, worker queues)."""
    from demos.config import WORKER_QUEUES, configure

    return HarnessConfig(**{"configure": configure, "queues": WORKER_QUEUES, **overrides})  # type: ignore[arg-type]
