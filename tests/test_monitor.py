"""The live monitor: one snapshot, the live view in a real terminal (tmux), a real deployment, and
``complete --monitor``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.test_doctor import ENV, client, shop_worker  # noqa: F401  # shop_worker is a fixture

ROOT = Path(__file__).resolve().parents[1]
WIDE = {**os.environ, "COLUMNS": "160"}


def monitor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "celery_sim", "monitor", *args],
        cwd=ROOT, env={**(env or os.environ), "COLUMNS": "160"}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_once_on_the_embedded_demo_shows_workers_queues_and_a_task_in_progress() -> None:
    run = monitor("--once")
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    for seen in ("main@csim-", "progress@csim-", "thread", "reports_queue", "nobody", "demos.calling.add"):
        assert seen in out, out
    # A progress task's update_state meta (no event carries it), while it runs.
    line = next(line for line in out.splitlines() if "demos.progress.process_items" in line)
    assert "PROGRESS" in line and "/10 (" in line, out


def test_bad_input_exits_2_naming_the_fix() -> None:
    run = monitor("--interval", "0")
    assert run.returncode == 2 and "--interval" in run.stderr
    run = monitor("--enable-events")
    assert run.returncode == 2 and "go with --real-broker URL or --app" in run.stderr
    run = monitor("--real-broker", "redis://127.0.0.1:1/0", "--once")
    assert run.returncode == 2 and "cannot reach the broker" in run.stderr


def _until(probe: Callable[[], str], want: str | Callable[[str], bool], timeout: float) -> str:
    """``probe()`` again (every 0.2 s: a terminal has no event to wait on) until it shows ``want``."""
    ok = want if callable(want) else (lambda seen: want in seen)
    deadline = time.monotonic() + timeout
    seen = probe()
    while not ok(seen) and time.monotonic() < deadline:
        time.sleep(0.2)
        seen = probe()
    return seen


def test_the_live_view_in_a_terminal_refreshes_and_exits_cleanly_on_ctrl_c() -> None:
    if shutil.which("tmux") is None:
        if os.environ.get("CELERY_SIM_REQUIRE_TMUX") == "1":
            pytest.fail("tmux is required here (CELERY_SIM_REQUIRE_TMUX=1): apt-get install tmux")
        pytest.skip("tmux is not installed (.ci/run installs it)")
    session = f"csim-{uuid.uuid4().hex[:8]}"
    # The pane decides the size (not COLUMNS/LINES a tmux server may have kept from whoever started it).
    command = f"cd {ROOT} && env -u COLUMNS -u LINES {sys.executable} -m celery_sim monitor --interval 0.3; echo EXIT=$?; sleep 60"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "60", command], check=True)
    try:

        def pane() -> str:
            return subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=True
            ).stdout

        first = _until(pane, "PROGRESS", 30)
        assert "PROGRESS" in first and "Ctrl-C to exit" in first, first

        # Refreshed: the progress task's share moves on while we look.
        def items(screen: str) -> list[str]:
            return [line for line in screen.splitlines() if "process_items" in line]

        later = _until(pane, lambda screen: items(screen) != items(first), 10)
        assert items(later) != items(first), later
        subprocess.run(["tmux", "send-keys", "-t", session, "C-c"], check=True)
        ended = _until(pane, "EXIT=", 20)
        assert "EXIT=0" in ended and "monitor stopped" in ended and "Traceback" not in ended, ended
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_complete_monitor_shows_the_run_live_and_still_reports() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "celery_sim", "run", "calling", "progress", "--monitor"],
        cwd=ROOT, env=WIDE, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    for seen in ("Workers", "Queues", "Tasks (most recent first)", "demos.progress.process_items", "ALL PASSED"):
        assert seen in run.stdout, run.stdout


@pytest.mark.real_broker
@pytest.mark.timeout(240)
def test_on_real_redis_with_a_real_worker(shop_worker: subprocess.Popen[str]) -> None:  # noqa: F811
    client("tasks.nightly_report.delay()")  # to 'reports', consumed by nobody
    scheduled = client("print(tasks.charge.apply_async(('o-9', 5), countdown=600).id)")
    run = monitor("--app", "demos.shop.celery_app:app", "--once", env=ENV)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "doctor-test@" in out and "prefork" in out, out
    reports = next(line for line in out.splitlines() if line.strip().startswith("reports"))
    assert "1" in reports.split() and "nobody" in reports, out
    assert any(scheduled[:8] in line and "SCHEDULED" in line for line in out.splitlines()), out

    # The worker runs without -E: --enable-events switches its task events on, and off at exit.
    live = subprocess.Popen(
        [sys.executable, "-m", "celery_sim", "monitor", "--app", "demos.shop.celery_app:app", "--enable-events",
         "--interval", "0.3", "--duration", "6"],
        cwd=ROOT, env={**ENV, "COLUMNS": "160"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert live.stderr is not None
    said = live.stderr.readline()  # once the workers have answered enable_events (bounded: --duration)
    assert "switched on for doctor-test@" in said, said
    done = client("r = tasks.send_receipt.delay('o-10'); r.get(timeout=30); print(r.id)")
    out, err = live.communicate(timeout=60)
    err = said + err
    assert live.returncode == 0, out + err
    assert any(done[:8] in line and "SUCCESS" in line for line in out.splitlines()), out
    after = client("print(tasks.app.control.disable_events(reply=True, timeout=2))")
    assert "already disabled" in after, after
