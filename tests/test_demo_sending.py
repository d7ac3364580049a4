"""The sending guide's app: ``send`` on the embedded broker, bad input, and a real ``celery -A
demos.sending worker`` on Redis reached with ``send --external`` (the broker diffed after)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from demos.sending.params import InvalidParams, example_params, validate
from tests.workers import celery_worker

ROOT = Path(__file__).resolve().parents[1]
URL = "redis://127.0.0.1:6379/12"
ENV = {**os.environ, "SENDING_BROKER_URL": URL, "SENDING_RESULT_BACKEND": URL, "COLUMNS": "200"}


def send(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "celery_sim", "send", *args],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_hello_health_and_the_example_psi_job_run_by_name() -> None:
    hello = send("hello", "--args", '["reader"]')
    assert hello.returncode == 0, hello.stdout + hello.stderr
    assert "tasks.secretflow.hello.hello_task" in hello.stdout and "Hello, reader!" in hello.stdout
    assert "published tasks.secretflow.hello.hello_task secretflow_queue" in hello.stdout
    health = send("health")
    assert health.returncode == 0 and "'status': 'ok'" in health.stdout, health.stdout
    psi = send("psi")
    assert psi.returncode == 0, psi.stdout + psi.stderr
    assert "'intersection_size': 3" in psi.stdout and "'receiver': 'alice'" in psi.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["psi", "--args", '["j", {"parties": ["alice"]}]'], "params.parties: a 2-party PSI needs two distinct"),
        (["psi", "--args", '["j"]'], "psi takes two arguments, the job's id and its params"),
        (["hello", "--kwargs", "{name: 1}"], "--kwargs '{name: 1}' is not JSON"),
        (["hello", "--wait", "0"], "0 is not a positive number of seconds"),
        (["hello", "--external"], "--external needs --real-broker URL"),
    ],
)
def test_bad_input_exits_2_naming_the_value(args: list[str], says: str) -> None:
    run = send(*args)
    assert run.returncode == 2 and says in run.stderr, run.stdout + run.stderr


def test_every_bad_field_is_named_by_its_dotted_path(tmp_path: Path) -> None:
    good = example_params(tmp_path)
    assert validate(good)["receiver"] == "alice"
    cases = {
        "spu.runtime.protocol": {**good, "spu": {**good["spu"], "runtime": {"protocol": "X"}}},
        "output_path.bob": {**good, "output_path": {"alice": "a"}},
        "receiver": {**good, "receiver": "carol"},
        "protocol": {**good, "protocol": "RSA"},
        "colour": {**good, "colour": "red"},
    }
    for field, params in cases.items():
        with pytest.raises(InvalidParams) as caught:
            validate(params)
        assert caught.value.field == field, caught.value
        assert str(caught.value).startswith(f"params.{field}: ")


def test_a_task_nobody_consumes_ends_in_the_diagnosis_not_a_hang() -> None:
    run = send("hello", "--queue", "nobody", "--wait", "0.5")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "PENDING" in run.stdout and "no worker consumes queue 'nobody'" in run.stdout


def test_an_unregistered_name_fails_with_notregistered() -> None:
    run = send("tasks.secretflow.hello_task", "--wait", "5")
    assert run.returncode == 1 and "NotRegistered" in run.stdout, run.stdout


@pytest.fixture
def guide_worker() -> Iterator[redis.Redis]:
    """``celery -A demos.sending worker -Q secretflow_queue,default,web_queue``, as the guide starts it."""
    with celery_worker("demos.sending", "secretflow_queue,default,web_queue", "guide-test@%h", URL, ENV, 1) as (_, db):
        yield db


@pytest.mark.real_broker
@pytest.mark.timeout(120)
def test_send_external_reaches_a_real_worker_and_leaves_nothing(guide_worker: redis.Redis) -> None:
    first = send("health", "--real-broker", URL, "--external", "--wait", "30")  # waits for the worker's start too
    assert first.returncode == 0 and "guide-test@" in first.stdout, first.stdout + first.stderr
    keys = set(guide_worker.keys("*"))  # the worker's own (its queues' bindings) from here on
    psi = send("psi", "--real-broker", URL, "--external")
    assert psi.returncode == 0 and "'intersection_size': 3" in psi.stdout, psi.stdout + psi.stderr
    lost = send("hello", "--queue", "nobody", "--wait", "1", "--real-broker", URL, "--external")
    assert lost.returncode == 1 and "no worker consumes queue 'nobody'" in lost.stdout, lost.stdout
    assert "guide-test@" in lost.stdout  # the live workers it did find
    assert set(guide_worker.keys("*")) == keys, "a send left keys on the broker"
