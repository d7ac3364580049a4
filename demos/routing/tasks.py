"""Tasks of the routing demo; each returns where it ran."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from demos.where import where


@shared_task(bind=True, name="demos.routing.secretflow_job")
def secretflow_job(self: Any) -> dict[str, Any]:
    return where(self)


@shared_task(bind=True, name="demos.routing.render_page")
def render_page(self: Any) -> dict[str, Any]:
    return where(self)


@shared_task(bind=True, name="demos.routing.quick_task")
def quick_task(self: Any) -> dict[str, Any]:
    return where(self)


@shared_task(bind=True, name="demos.routing.slow_report")
def slow_report(self: Any) -> dict[str, Any]:
    return where(self)


@shared_task(bind=True, name="demos.routing.nightly_export")
def nightly_export(self: Any) -> dict[str, Any]:
    return where(self)


@shared_task(bind=True, name="demos.routing.unrouted")
def unrouted(self: Any) -> dict[str, Any]:
    return where(self)
