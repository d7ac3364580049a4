"""Names private to one run, so that runs sharing a broker never touch each other's queues."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

__all__ = ["Namespace"]


@dataclass(frozen=True)
class Namespace:
    """Maps a scenario's logical queue names (``web_queue``) to this run's (``csim-1a2b3c4d.web_queue``)."""

    run_id: str = field(default_factory=lambda: secrets.token_hex(4))

    @property
    def prefix(self) -> str:
        return f"csim-{self.run_id}"

    def queue(self, name: str) -> str:
        """This run's name for logical queue ``name``."""
        return f"{self.prefix}.{name}"

    def logical(self, name: str) -> str:
        """The logical name of queue ``name`` (unchanged if it is not this run's)."""
        return name.removeprefix(self.prefix + ".")

    def owns(self, name: str) -> bool:
        return name.startswith(self.prefix + ".")

    @property
    def control_exchange(self) -> str:
        return f"{self.prefix}.control"

    @property
    def event_exchange(self) -> str:
        return f"{self.prefix}.events"
