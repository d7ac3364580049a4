"""A real ``celery -A APP worker`` process on a Redis database, and the database as it was after."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import redis

from tests.test_real_brokers import need

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def celery_worker(
    app: str, queues: str, node: str, url: str, env: dict[str, str], concurrency: int = 2
) -> Iterator[tuple[subprocess.Popen[str], redis.Redis]]:
    """The worker (killed at the end, with its children) and a client of ``url``; every key
    created meanwhile (the worker's bindings, what the test left) is deleted after."""
    need(url)
    db = redis.Redis.from_url(url)
    before = set(db.keys("*"))
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queues, "-c", str(concurrency), "-n", node,
         "--without-mingle", "--without-gossip", "-l", "WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        yield worker, db
    finally:
        with contextlib.suppress(ProcessLookupError):  # the test may have killed it already
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
        created = set(db.keys("*")) - before
        if created:
            db.delete(*created)
        db.close()
