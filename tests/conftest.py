from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import Celery, signals
from hypothesis import HealthCheck, settings

from celery_sim.core.harness import Harness, HarnessConfig
from celery_sim.core.namespace import Namespace
from celery_sim.core.workers.process import live_processes
from celery_sim.embedded import memory, results
from celery_sim.embedded.fakeredis_server import live_servers
from celery_sim.observe.recorder import task_published, task_state_updated
from celery_sim.scenarios.catalog import default_config, load_catalog

load_catalog()

# Property-test profiles (tests/test_retry_properties.py): "ci" by default, well under 60 s on two
# cores; "deep" with --hypothesis-profile=deep for a nightly-style run. Each example opens a
# harness, so Hypothesis' per-example deadline does not apply.
settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("deep", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")

WATCHED_SIGNALS = [
    task_published,
    task_state_updated,
    signals.task_received,
    signals.task_prerun,
    signals.task_success,
    signals.task_failure,
    signals.task_retry,
    signals.task_revoked,
    signals.task_unknown,
    signals.task_rejected,
]


def _csim_threads() -> set[str]:
    # csim-spawner lives as long as the process, by design (see celery_sim/spawn.py).
    return {
        t.name
        for t in threading.enumerate()
        if t.name.startswith("csim-") and not t.name.startswith("csim-spawner") and t.is_alive()
    }


@pytest.fixture(autouse=True)
def nothing_leaks() -> Iterator[None]:
    """Fail a test that leaves a worker thread, broker state, result store or signal receiver behind."""
    threads_before = _csim_threads()
    receivers_before = [len(s.receivers) for s in WATCHED_SIGNALS]
    yield
    leaked_threads = _csim_threads() - threads_before
    assert not leaked_threads, f"threads left running: {sorted(leaked_threads)}"
    assert memory.live_vhosts() == [], "memory broker state left behind"
    assert results.live_stores() == [], "result store left behind"
    assert live_servers() == [], "fakeredis server left running"
    assert live_processes() == [], "worker process left running"
    assert [len(s.receivers) for s in WATCHED_SIGNALS] == receivers_before, "signal receivers left connected"


def with_tasks(tasks: dict[str, Callable[..., Any]], **config: Any) -> HarnessConfig:
    """The demos' configuration plus ``tasks`` (name -> function), registered on each run's app only."""
    demo_configure = default_config().configure
    assert demo_configure is not None

    def configure(app: Celery, ns: Namespace) -> None:
        demo_configure(app, ns)
        for name, fn in tasks.items():
            app.task(name=name, shared=False)(fn)

    return default_config(configure=configure, **config)


@pytest.fixture
def harness() -> Iterator[Harness]:
    with Harness(default_config()) as running:
        yield running


def require_brokers() -> bool:
    return os.environ.get("CELERY_SIM_REQUIRE_BROKERS") == "1"
