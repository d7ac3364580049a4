"""A gentle, endless demo load for ``python -m celery_sim monitor`` on the embedded broker.

Every cycle: a task reporting progress as it goes, a quick one, one that fails, one that retries
once, and one routed to a queue nobody consumes (its queue's length grows: the monitor shows
"nobody" consuming it).
"""

from __future__ import annotations

import threading
from typing import Any

from celery_sim.core.harness import Harness
from demos.calling.tasks import add
from demos.canvas.tasks import fail
from demos.monitor.tasks import flaky
from demos.progress.tasks import process_items
from demos.routing.tasks import nightly_export

__all__ = ["DemoLoad"]

#: Seconds between cycles.
CYCLE_S = 2.0


class DemoLoad:
    """Sends a cycle of demo tasks every :data:`CYCLE_S` seconds on a thread, until :meth:`stop`."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.harness.start_worker(["progress"], name="progress", concurrency=2)
        self._thread = threading.Thread(target=self._run, name="csim-demo-load", daemon=True)
        self._thread.start()

    def cycle(self) -> list[Any]:
        """Send one cycle; returns the results."""
        return [
            process_items.apply_async((10,), {"step_s": 0.1}, queue=self.harness.queue("progress")),
            add.delay(2, 3),
            fail.delay("the demo's failing task"),
            flaky.delay(),
            nightly_export.delay(),
        ]

    def _run(self) -> None:
        # Celery's current app is per thread: without this, the shared tasks below would go to
        # Celery's default app (amqp://guest@localhost//), not to the run's broker.
        self.harness.app.set_current()
        while not self._stopping.is_set():
            self.cycle()
            self._stopping.wait(CYCLE_S)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
