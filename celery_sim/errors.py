"""Errors raised by celery_sim; each message names the value at fault and the fix."""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "CelerySimError",
    "HarnessError",
    "MissingModuleError",
    "UnknownScenarioError",
    "UsageError",
    "WorkerError",
]


class CelerySimError(Exception):
    """Root of every error celery_sim raises on purpose."""


class UsageError(CelerySimError):
    """A value given by the user is malformed or unknown."""


class BrokerError(UsageError):
    """The broker name or URL is unknown, malformed or unreachable."""


class MissingModuleError(UsageError):
    """A module the run imports is not installed; the message names it and the install command."""

    def __init__(self, message: str, *, module: str) -> None:
        super().__init__(message)
        self.module = module


class UnknownScenarioError(UsageError):
    """A scenario or family name matches nothing in the catalog."""


class HarnessError(CelerySimError):
    """The harness was used out of order (not started, started twice, ...)."""


class WorkerError(CelerySimError):
    """An embedded worker failed to start or to stop in time."""
