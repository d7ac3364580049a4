"""Which scenario families the catalog has: family (or a part of one) -> module registering its scenarios.

A table of names only (like kombu's transport table), so that listing the catalog imports
nothing of Celery (see :mod:`celery_sim.scenarios.index`).
"""

from __future__ import annotations

__all__ = ["FAMILIES"]

FAMILIES: dict[str, str] = {
    "calling": "demos.calling.scenarios",
    "progress": "demos.progress.scenarios",
    "routing": "demos.routing.scenarios",
    "canvas": "demos.canvas.scenarios",
    "retries": "demos.retries.scenarios",
    "time": "demos.timing.scenarios",
    "beat": "demos.timing.beat",
    "broker": "demos.brokers.scenarios",
    "doctor": "demos.doctor.scenarios",
    "monitor": "demos.monitor.scenarios",
    # The source guides' own apps (family "demo"; each one's scenarios also by "demo.<app>").
    "demo.sending": "demos.sending.scenarios",
    "demo.learning": "demos.learning.scenarios",
    "demo.async": "demos.async_tasks.scenarios",
    "demo.ai_runner": "demos.ai_runner.scenarios",
}
