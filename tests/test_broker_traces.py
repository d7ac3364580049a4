"""Nothing a run writes outlives it on a shared Redis or RabbitMQ: the broker, diffed before and after.

Keys of the whole Redis database (and kombu's shared binding-deadline set), every queue and
exchange of the RabbitMQ virtual host (listed with rabbitmqctl), and the Redis database that holds
RabbitMQ runs' results. A SIGKILLed run leaves traces; ``clean`` removes exactly those.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable

import pytest
import redis

from celery_sim.core.cleanup import BINDING_DEADLINES
from celery_sim.core.harness import Harness
from celery_sim.scenarios.catalog import default_config, load_catalog
from celery_sim.scenarios.runner import Runner

from .conftest import require_brokers
from .test_real_brokers import REAL_BROKERS, need

pytestmark = pytest.mark.real_broker

RESULTS_DB = "redis://127.0.0.1:6379/0"  # where RabbitMQ runs keep results by default
#: Canvas (group and chord keys), a ledger (counters), retries, ETAs, extra workers, a declared queue.
SCENARIOS = ["calling", "canvas", "retries.idempotent", "routing.worker_subsets", "time.countdown_eta"]


def _redis_state(url: str) -> set[str]:
    client = redis.Redis.from_url(url)
    try:
        # kombu's shared deadline set exists while any queue with an expiry is bound: it is
        # compared by its members, which name their runs.
        keys = {f"key {k.decode()}" for k in client.scan_iter(count=1000)} - {f"key {BINDING_DEADLINES}"}
        return keys | {f"deadline {m.decode()}" for m in client.zrange(BINDING_DEADLINES, 0, -1)}
    finally:
        client.close()


def _rabbit_state() -> set[str]:
    if shutil.which("rabbitmqctl") is None:
        if require_brokers():
            pytest.fail("CELERY_SIM_REQUIRE_BROKERS=1 but rabbitmqctl is not on PATH to list queues and exchanges")
        pytest.skip("rabbitmqctl is needed to list RabbitMQ's queues and exchanges")
    state = set()
    for kind in ("queues", "exchanges"):
        listed = subprocess.run(
            ["rabbitmqctl", "-q", f"list_{kind}", "--no-table-headers", "name"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        state |= {f"{kind} {line.strip()}" for line in listed.splitlines() if line.strip()}
    return state


def snapshot(url: str) -> Callable[[], set[str]]:
    """A function returning everything on the broker ``url`` is (and its results database)."""
    if url.startswith("redis"):
        return lambda: _redis_state(url)
    return lambda: _rabbit_state() | _redis_state(RESULTS_DB)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("url", REAL_BROKERS, ids=["redis", "rabbitmq"])
def test_a_run_leaves_nothing_new_on_the_broker(url: str) -> None:
    need(url)
    state = snapshot(url)
    before = state()
    report = Runner(lambda: Harness(default_config(broker=url))).run(load_catalog().select(SCENARIOS))
    assert [r.name for r in report.not_passed()] == []
    assert sorted(state() - before) == []


def _clean(url: str, *args: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", "celery_sim", "clean", "--real-broker", url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return " ".join(completed.stdout.split())


@pytest.mark.timeout(300)
@pytest.mark.parametrize("url", REAL_BROKERS, ids=["redis", "rabbitmq"])
def test_clean_removes_exactly_what_a_killed_run_left(url: str) -> None:
    need(url)
    state = snapshot(url)
    before = state()
    run_id = f"kill{uuid.uuid4().hex[:8]}"
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery_sim",
            "run",
            "calling",
            "canvas",
            "time",
            "--real-broker",
            url,
            "--run-id",
            run_id,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert run.stdout is not None
        for line in run.stdout:  # killed in the middle of the catalog, with its queues declared
            if "canvas.chord" in line:
                break
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(10)
        if run.stdout is not None:
            run.stdout.close()
    left = state() - before
    assert any(run_id in item for item in left), "a killed run leaves traces (else this test proves nothing)"
    assert all(run_id in item for item in left), sorted(left)

    listed = _clean(url, "--run-id", run_id, "--dry-run")
    assert (
        f"Would remove {len([i for i in left if i.startswith(('key', 'deadline', 'queues', 'exchanges'))])}" in listed
    )
    assert state() - before == left, "--dry-run removes nothing"
    _clean(url, "--run-id", run_id)
    assert sorted(state() - before) == []
