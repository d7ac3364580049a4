"""The catalog on the real Redis and RabbitMQ of this machine with each worker mode (mandatory when
CELERY_SIM_REQUIRE_BROKERS=1). The thread mode on each broker is covered by tests/test_fidelity.py."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from celery_sim.core.brokers import mask_url, resolve_broker
from celery_sim.errors import BrokerError

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


def _complete(*args: str, timeout: float = 280, but_demos: bool = False) -> tuple[int, dict[str, Any], str]:
    """``python -m celery_sim complete ARGS --json`` as a user runs it: exit status, JSON, output.

    ``but_demos``: every family but ``demo`` (the guides' apps, each on a harness of its own:
    the worker-process runs on both brokers, the fidelity matrix and their own tests run them;
    here they would add a minute to each variant of the result backend and worker mode).
    """
    command = ["run", *_families_but_demos()] if but_demos else ["complete"]
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "run.json"
        completed = subprocess.run(
            [sys.executable, "-m", "celery_sim", *command, *args, "--json", str(out)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        data = json.loads(out.read_text()) if out.exists() else {}
    return completed.returncode, data, completed.stdout[-4000:] + completed.stderr[-2000:]


def _families_but_demos() -> list[str]:
    from celery_sim.scenarios.catalog import load_catalog

    return [family for family in load_catalog().families() if family != "demo"]


def _problems(data: dict[str, Any]) -> list[str]:
    """Each scenario that neither passed nor was skipped as declared: diagnosis and failed checks."""
    return [
        f"{s['name']} {s['status']}: {s['diagnosis']} "
        + "; ".join(
            f"{c['name']}: expected {c['expected']!r}, observed {c['observed']!r}"
            for c in s["checks"]
            if not c["passed"]
        )
        for s in data.get("scenarios", [])
        if s["status"] != "passed"
        and not (s["status"] == "skipped" and (s["diagnosis"] or "").startswith("declared for"))
    ]


@pytest.mark.real_broker
@pytest.mark.timeout(300)
@pytest.mark.parametrize("url", REAL_BROKERS, ids=["redis", "rabbitmq"])
def test_complete_passes_with_a_worker_process(url: str) -> None:
    need(url)
    status, data, output = _complete("--real-broker", url, "--worker", "process")
    assert _problems(data) == [], output
    assert status == 0, output
    assert data["broker"] == mask_url(url)


@pytest.mark.real_broker
@pytest.mark.timeout(300)
@pytest.mark.parametrize("url", REAL_BROKERS, ids=["redis", "rabbitmq"])
def test_complete_passes_with_external_workers_started_by_the_documented_command(url: str) -> None:
    from .test_broker_traces import snapshot

    need(url)
    state = snapshot(url)
    before = state()
    run_id = f"ext{uuid.uuid4().hex[:8]}"
    printed = subprocess.run(
        [sys.executable, "-m", "celery_sim", "worker-command", "--real-broker", url, "--run-id", run_id],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    assert "***" not in printed or ":***@" in mask_url(url), "only a password may be masked"
    words = shlex.split(printed)
    env = dict(os.environ)
    while "=" in words[0]:  # VAR=value words before the command
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    env["CSIM_BROKER_URL"] = url  # the printed command masks the password
    assert words[:4] == ["celery", "-A", "celery_sim.core.workers.bootstrap", "worker"]
    node = words.index("-n") + 1
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", *words[:node], f"w{n}@{run_id}", *words[node + 1 :], "-c", "2", "-l", "WARNING"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for n in (1, 2)
    ]
    try:
        status, data, output = _complete(
            "--real-broker", url, "--worker", "external", "--run-id", run_id, but_demos=True
        )
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(5)
    # The run keeps the queues the workers consume (and their control and events); once the
    # workers are gone, `clean` removes them, and the broker is as it was.
    subprocess.run(
        [sys.executable, "-m", "celery_sim", "clean", "--real-broker", url, "--run-id", run_id],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert sorted(state() - before) == []
    assert _problems(data) == [], output
    assert status == 0, output
    group = next(s for s in data["scenarios"] if s["name"] == "canvas.group")
    hosts = next(c for c in group["checks"] if c["name"].startswith("all members ran on the main worker"))
    assert f"w1@{run_id}" in str(hosts["expected"]) and f"w2@{run_id}" in str(hosts["expected"])


def test_external_mode_without_workers_reports_once_with_the_command_to_start_one() -> None:
    url = REAL_BROKERS[0]
    need(url)
    status, data, output = _complete("--real-broker", url, "--worker", "external", "--run-id", "nobodyhome")
    assert status == 1, output
    first, *rest = data["scenarios"]
    assert first["status"] == "error"
    assert "no external worker consumes default, secretflow_queue, web_queue of run nobodyhome" in first["diagnosis"]
    assert "celery -A celery_sim.core.workers.bootstrap worker -E -Q csim-nobodyhome.default" in first["diagnosis"]
    assert {s["status"] for s in rest} == {"skipped"}


@pytest.mark.real_broker
@pytest.mark.parametrize("url", REAL_BROKERS, ids=["redis", "rabbitmq"])
def test_a_run_leaves_no_queue_exchange_or_binding_on_a_shared_broker(url: str) -> None:
    from kombu import Connection
    from kombu.exceptions import ChannelError

    from celery_sim.core.harness import Harness
    from celery_sim.scenarios.catalog import default_config, load_catalog
    from celery_sim.scenarios.runner import Runner

    need(url)
    run_id = f"leak{uuid.uuid4().hex[:8]}"
    harness = Harness(default_config(broker=url, run_id=run_id))
    chosen = ["calling.delay", "routing.worker_subsets", "broker.visibility_timeout"]  # the last: a key prefix
    report = Runner(lambda: harness).run(load_catalog().select(chosen))
    redis_only = "passed" if url.startswith("redis") else "skipped"
    assert [r.status.value for r in report.results] == ["passed", "passed", redis_only]
    used = ["default", "secretflow_queue", "web_queue", "fast_queue", "slow_queue"]
    if url.startswith("redis"):
        import redis

        assert sorted(redis.Redis.from_url(url).scan_iter(match=f"*csim-{run_id}*")) == []
        return
    with Connection(url) as conn:
        for name in used:
            channel = conn.channel()
            with pytest.raises(ChannelError):  # 404 NOT_FOUND: deleted
                channel.queue_declare(f"csim-{run_id}.{name}", passive=True)


@pytest.mark.real_broker
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("url", "backend"),
    [
        (REAL_BROKERS[1], "rpc://"),
        (REAL_BROKERS[0], "db+sqlite:///{tmp}/results.sqlite"),
        (REAL_BROKERS[1], "db+sqlite:///{tmp}/results.sqlite"),
    ],
    ids=["rabbitmq-rpc", "redis-sqlite", "rabbitmq-sqlite"],
)
def test_complete_passes_with_another_result_backend_but_for_its_declared_skips(
    url: str, backend: str, tmp_path: Path
) -> None:
    from .test_broker_traces import snapshot

    need(url)
    state = snapshot(url)
    before = state()
    status, data, output = _complete(
        "--real-broker", url, "--result-backend", backend.format(tmp=tmp_path), but_demos=True
    )
    assert _problems(data) == [], output
    assert status == 0, output
    # rpc:// reply queues are named by thread, not by run: the run deletes those its threads declared.
    assert sorted(state() - before) == []
    if backend == "rpc://":
        skipped = {s["name"] for s in data["scenarios"] if s["status"] == "skipped"}
        assert {"canvas.chord", "canvas.nested", "canvas.chord_error"} <= skipped


@pytest.mark.parametrize("url", REAL_BROKERS, ids=["redis", "amqp"])
def test_a_question_after_one_that_timed_out_is_answered_within_its_own_timeout(url: str) -> None:
    # On Redis a timed-out collect leaves its BRPOP on the connection, and the next broadcast's
    # reply queue (a new one per broadcast) was read only once that returned (its 0.1 s BRPOP timeout,
    # then kombu's 0.1 s polling sleep): a question shorter than that lost its answer.
    need(url)
    from celery_sim.core.harness import Harness
    from celery_sim.core.workers.probe import answers, ask, probe_control
    from celery_sim.scenarios.catalog import default_config

    with Harness(default_config(broker=url, concurrency=1)) as h:
        control = probe_control(h.app)
        host = h.crew.main_worker.hostname
        answered = []
        for _ in range(3):
            assert ask(control, "ping", timeout=0.05, limit=1, destination=["nobody@nowhere"]) == {}
            answered.append(answers(control, host, 0.06))
    assert answered == [True, True, True]
