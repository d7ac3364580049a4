"""The embedded worker's blocking loop on Redis, and the BRPOP interval the harness sets there."""

from __future__ import annotations

from typing import Any

import pytest
from celery.worker import loops

from celery_sim.core.adopt import REDIS_POLLING_INTERVAL_S
from celery_sim.core.harness import Harness
from celery_sim.core.workers.drainloop import DRAIN_CAP_S, _CappedDrain, capped_synloop
from celery_sim.scenarios.catalog import default_config


class _Connection:
    def __init__(self) -> None:
        self.waits: list[float | None] = []
        self.transport = "the transport"

    def drain_events(self, timeout: float | None = None) -> None:
        self.waits.append(timeout)


def test_the_capped_connection_waits_at_most_the_cap_and_is_otherwise_the_connection() -> None:
    connection = _Connection()
    capped = _CappedDrain(connection, 0.05)
    capped.drain_events(timeout=2.0)  # what Celery's synloop asks
    capped.drain_events()
    capped.drain_events(timeout=0.01)
    assert connection.waits == [0.05, 0.05, 0.01]
    assert capped.transport == "the transport"


def _loop(harness: Harness) -> Any:
    controller: Any = harness.main_worker._controller  # type: ignore[attr-defined]
    return controller.consumer.loop


@pytest.mark.parametrize(("broker", "loop"), [("fakeredis", capped_synloop), ("memory", loops.synloop)])
def test_only_kombus_redis_transport_gets_the_capped_loop(broker: str, loop: Any) -> None:
    with Harness(default_config(broker=broker)) as harness:
        assert _loop(harness) is loop
        assert harness.app.tasks["demos.calling.add"].delay(2, 3).get(timeout=5) == 5
    assert DRAIN_CAP_S < 2.0


def test_on_redis_the_harness_sets_kombus_brpop_interval_unless_the_app_sets_one() -> None:
    with Harness(default_config(broker="fakeredis")) as harness:
        assert harness.app.conf.broker_transport_options["polling_interval"] == REDIS_POLLING_INTERVAL_S
    mine = {"broker_transport_options": {"polling_interval": 0.5, "visibility_timeout": 30}}
    with Harness(default_config(broker="fakeredis", extra_conf=mine)) as harness:
        assert harness.app.conf.broker_transport_options == {"polling_interval": 0.5, "visibility_timeout": 30}
    with Harness(default_config()) as harness:
        assert "polling_interval" not in (harness.app.conf.broker_transport_options or {})
