"""The AI task runner served as a user serves it (``python -m celery_sim serve ai_runner``), tested
over real HTTP with SQLite and with PostgreSQL: the API's answers, 50 concurrent POSTs with every
row COMPLETED and none lost, bad input, and a clean stop on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from time import monotonic, perf_counter
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from demos.ai_runner.client import call
from tests.conftest import require_brokers

ROOT = Path(__file__).resolve().parents[1]
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CONCURRENT = 50


class Served:
    """``serve ai_runner --port 0`` in a subprocess; its URL read from what it prints."""

    def __init__(self, database_url: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery_sim", "serve", "ai_runner", "--port", "0", "--database-url", database_url,
             "--duration", "300", *extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.started = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self.started.wait(60):
            self.stop()
            pytest.fail("serve did not print its URL within 60 s:\n" + "".join(self.lines))
        found = re.search(r"serving on (http://\S+)", "".join(self.lines))
        assert found, "".join(self.lines)
        self.url = found.group(1)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "serving on" in line or "Error" in line:
                self.started.set()
        self.started.set()

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            code = self.proc.wait(10)
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code


def _done(base: str, row_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = monotonic() + timeout
    row: dict[str, Any] = {}
    while monotonic() < deadline:
        row = call("GET", f"{base}/tasks/{row_id}")[1]
        if row.get("status") in ("COMPLETED", "FAILED"):
            return row
        threading.Event().wait(0.05)  # the API has no push; poll, bounded by the deadline
    return row


def _pg_schema() -> Iterator[str]:
    engine = create_engine(PG)
    schema = f"csim_{uuid.uuid4().hex[:8]}"
    try:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:
        engine.dispose()
        if require_brokers():
            pytest.fail(f"CELERY_SIM_REQUIRE_BROKERS=1 but PostgreSQL at {PG} is not usable: {exc}")
        pytest.skip(f"no PostgreSQL at {PG} ({exc})")
    try:
        yield f"{PG}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ai_runner.db"
    else:
        yield from _pg_schema()


@pytest.mark.timeout(240)
def test_the_api_over_real_http_with_50_concurrent_posts(database: str) -> None:
    served = Served(database)
    try:
        base = served.url
        assert call("GET", base + "/health") == (200, {"status": "ok"})
        started = perf_counter()
        status, created = call("POST", base + "/tasks", {"prompt": "hello", "model": "demo-large"})
        took_ms = (perf_counter() - started) * 1000
        assert status == 201 and created["status"] == "PENDING" and created["id"], created
        print(f"POST /tasks took {took_ms:.1f} ms")  # measured, not asserted (bench's job)
        row = _done(base, created["id"])
        assert (row["status"], row["celery_state"], row["progress"]) == ("COMPLETED", "SUCCESS", 100), row
        assert row["result"] and row["generations"] == 1

        assert call("GET", base + "/tasks/" + str(uuid.uuid4()))[0] == 404
        for bad in ({}, {"prompt": ""}, {"prompt": 3}, {"prompt": "x", "priority": "asap"}):
            assert call("POST", base + "/tasks", bad)[0] == 422, bad

        failed = _done(base, call("POST", base + "/tasks", {"prompt": "x", "model": "nope"})[1]["id"])
        assert failed["status"] == "FAILED" and failed["error"].startswith("ValueError: unsupported model"), failed

        with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
            answers = list(pool.map(lambda i: call("POST", base + "/tasks", {"prompt": f"p{i}"}), range(CONCURRENT)))
        assert [status for status, _ in answers] == [201] * CONCURRENT
        ids = {body["id"] for _, body in answers}
        assert len(ids) == CONCURRENT
        rows = [_done(base, row_id) for row_id in ids]
        assert sorted({r["status"] for r in rows}) == ["COMPLETED"], [r for r in rows if r["status"] != "COMPLETED"]
        engine = create_engine(database)
        try:
            with engine.connect() as conn:
                stored = conn.execute(
                    text("SELECT count(*), sum(generations) FROM ai_tasks WHERE status = 'COMPLETED'")
                ).one()
        finally:
            engine.dispose()
        assert tuple(stored) == (CONCURRENT + 1, CONCURRENT + 1), "a row was lost or generated twice"
    finally:
        code = served.stop()
    assert code == 0 and "stopped" in "".join(served.lines), "".join(served.lines)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--database-url", "nonsense"], "--database-url 'nonsense' is not a database URL"),
        (["--database-url", "postgresql+psycopg://u:secret@127.0.0.1:1/x"], "cannot use it"),
        (["--port", "70000"], "--port 70000 is not a port"),
        (["--real-broker", "redis://127.0.0.1:1/0"], "cannot reach the broker"),
    ],
)
def test_bad_input_exits_2_naming_the_value(args: list[str], says: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "celery_sim", "serve", "ai_runner", "--duration", "1", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and says in run.stderr, run.stdout + run.stderr
    assert "secret" not in run.stderr


def test_a_port_in_use_is_named() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "celery_sim", "serve", "ai_runner", "--port", str(port), "--duration", "1"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert run.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in run.stderr, run.stderr
