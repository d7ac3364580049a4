"""The PENDING doctor against a real deployment: the example shop's worker on real Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.workers import celery_worker

ROOT = Path(__file__).resolve().parents[1]
#: A database of its own, so that the broker diffs of other tests (database 0) never see it;
#: everything the test writes there is deleted at its end.
URL = "redis://127.0.0.1:6379/9"
ENV = {**os.environ, "SHOP_BROKER_URL": URL, "SHOP_RESULT_BACKEND": URL}


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "celery_sim", "doctor", "--app", "demos.shop.celery_app:app", *args],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def client(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", f"from demos.shop import tasks\n{code}"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip


@pytest.fixture
def shop_worker() -> Iterator[subprocess.Popen[str]]:
    with celery_worker("demos.shop.celery_app", "shop,payments,emails", "doctor-test@%h", URL, ENV) as (worker, _):
        assert client("print(tasks.send_receipt.delay('warm-up').get(timeout=30))") == "receipt for warm-up sent"
        yield worker


@pytest.mark.real_broker
@pytest.mark.timeout(240)
def test_the_doctor_names_each_cause_and_changes_nothing(shop_worker: subprocess.Popen[str]) -> None:
    db = redis.Redis.from_url(URL)
    client("tasks.nightly_report.delay()")  # routed to 'reports', which this worker does not consume
    queues_before = {q: db.llen(q) for q in ("reports", "shop", "payments", "emails")}

    unconsumed = doctor("--task", "shop.nightly_report")
    assert unconsumed.returncode == 1, unconsumed.stdout + unconsumed.stderr
    assert "routes to queue 'reports', which no worker consumes" in unconsumed.stdout
    assert "1 message(s) waiting" in unconsumed.stdout and "-Q reports" in unconsumed.stdout

    unregistered = doctor("--task", "shop.refund")
    assert unregistered.returncode == 1 and "'shop.refund' is registered on no live worker" in unregistered.stdout

    scheduled_id = client("print(tasks.charge.apply_async(('o-1', 5), countdown=600).id)")
    scheduled = doctor(scheduled_id)
    assert scheduled.returncode == 0, scheduled.stdout
    assert f"task {scheduled_id} is scheduled for later" in scheduled.stdout and "doctor-test@" in scheduled.stdout

    done_id = client("r = tasks.send_receipt.delay('o-2'); r.get(timeout=30); print(r.id)")
    done = doctor(done_id)
    assert done.returncode == 0 and "the task is done: SUCCESS" in done.stdout

    unknown = doctor("5f1c0000-0000-0000-0000-000000000000")
    assert unknown.returncode == 1 and "no worker knows task" in unknown.stdout

    assert {q: db.llen(q) for q in queues_before} == queues_before  # it never consumed nor purged
    os.killpg(shop_worker.pid, signal.SIGKILL)
    shop_worker.wait(10)
    nobody = doctor("--task", "shop.charge")
    assert nobody.returncode == 1 and "no worker at all" in nobody.stdout
    db.close()


def test_bad_input_exits_2_naming_the_fix() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "celery_sim", "doctor", "--real-broker", "redis://127.0.0.1:6379/9"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and "give a TASK_ID, or --task NAME" in run.stderr
    run = subprocess.run(
        [sys.executable, "-m", "celery_sim", "doctor", "some-id"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2 and "give --real-broker URL" in run.stderr
