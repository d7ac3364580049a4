"""The catalog on the real Redis and RabbitMQ of this machine (mandatory when CELERY_SIM_REQUIRE_BROKERS=1)."""

from __future__ import annotations

import os

import pytest

from celery_sim.brokers import mask_url, resolve_broker
from celery_sim.catalog import default_config, load_catalog
from celery_sim.errors import BrokerError
from celery_sim.harness import Harness
from celery_sim.runner import Runner
from celery_sim.scenario import Status

from .conftest import require_brokers

REAL_BROKERS = [
    os.environ.get("CELERY_SIM_REDIS_URL", "redis://127.0.0.1:6379/0"),
    os.environ.get("CELERY_SIM_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
]


def need(url: str) -> None:
    try:
        resolve_broker(url).preflight(timeout=3)
    except BrokerError as exc:
        if require_brokers():
            pytest.fail(f"CELERY_SIM_REQUIRE_BROKERS=1 but {exc}")
        pytest.skip(f"no broker at {mask_url(url)} ({exc}); set CELERY_SIM_REQUIRE_BROKERS=1 to make this mandatory")


@pytest.mark.real_broker
@pytest.mark.parametrize("url", REAL_BROKERS, ids=["redis", "rabbitmq"])
def test_the_whole_catalog_passes_on_a_real_broker(url: str) -> None:
    need(url)
    catalog = load_catalog()
    report = Runner(lambda: Harness(default_config(broker=url))).run(catalog.all())
    declared = {s.name for s in catalog.all() if resolve_broker(url).name in s.skip_on}
    problems = [
        f"{r.name} {r.status.value}: {r.diagnosis}"
        for r in report.results
        if not (r.status is Status.PASSED or (r.status is Status.SKIPPED and r.name in declared))
    ]
    assert problems == []
    assert report.broker == mask_url(url)
