"""No process outlives a run: the prefork worker and the fakeredis server are reaped however it ends.

Each test runs the real CLI in a subprocess, waits until its worker process answers, ends the run
in one way (Ctrl-C, a scenario deadline, SIGKILL of the run itself) and then looks for any process
the run started. Linux only: processes are found through /proc.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from celery_sim.embedded import zygote

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds processes through /proc (Linux)")

#: Bound for every wait in this file; a start takes ~1.5 s, a stop ~1 s.
LIMIT_S = 30.0


def _children() -> dict[int, int]:
    """pid -> parent pid of every process on the machine."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # ended meanwhile
            found[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return found


def _descendants(root: int) -> set[int]:
    parents = _children()
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _is_fakeredis(pid: int) -> bool:
    """A fakeredis server, or its template: by command line, or by name once forked from the run."""
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        name = ""
    return "fakeredis_server" in _cmdline(pid) or name in (zygote.SERVER_NAME, zygote.TEMPLATE_NAME)


def _alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (zombies count as gone: they hold no resources but a pid)."""
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _start_run(*args: str) -> tuple[subprocess.Popen[bytes], set[int]]:
    """The CLI running ``args``, once its prefork worker process and its children exist."""
    cli = subprocess.Popen(
        [sys.executable, "-m", "celery_sim", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # so that a SIGKILL of the run is not a SIGKILL of pytest
    )
    deadline = time.monotonic() + LIMIT_S
    while time.monotonic() < deadline:
        started = _descendants(cli.pid)
        workers = {p for p in started if "celery_sim.core.workers.bootstrap" in _cmdline(p)}
        # the worker's main process and its pool child (prefork)
        if len(workers) >= 2 and any(_is_fakeredis(p) for p in started):
            return cli, started
        if cli.poll() is not None:
            pytest.fail(f"the run ended (status {cli.returncode}) before its worker process started")
        time.sleep(0.05)
    cli.kill()
    pytest.fail("the run's prefork worker did not appear within the limit")


def _gone_within(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return {p for p in _alive(pids)}


def test_ctrl_c_reaps_the_worker_process_and_the_embedded_broker() -> None:
    cli, started = _start_run("run", "time.soft_limit", "time.hard_limit", "time.revoke")
    os.kill(cli.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends the run
    assert cli.wait(LIMIT_S) == 130
    assert _gone_within(started, 5.0) == set()


def test_a_scenario_past_its_deadline_still_has_its_worker_process_reaped() -> None:
    # The worker process takes longer than 1 s to answer: the deadline passes during its start.
    cli = subprocess.Popen(
        [sys.executable, "-m", "celery_sim", "run", "time.soft_limit", "--timeout", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    seen: dict[int, str] = {}
    deadline = time.monotonic() + LIMIT_S
    while cli.poll() is None and time.monotonic() < deadline:
        seen.update((pid, _cmdline(pid)) for pid in _descendants(cli.pid) if pid not in seen)
        time.sleep(0.02)
    output = cli.communicate(timeout=LIMIT_S)[0].decode()
    assert cli.returncode == 1, output
    assert "timeout" in output
    assert any("celery_sim.core.workers.bootstrap" in line for line in seen.values()), (
        "the worker process never started"
    )
    assert _gone_within(set(seen), 5.0) == set()


def test_a_killed_run_leaves_no_orphan() -> None:
    cli, started = _start_run("run", "time.soft_limit", "time.hard_limit", "time.revoke")
    os.killpg(cli.pid, signal.SIGKILL)  # no chance to clean up: the kernel's parent-death signal acts
    cli.wait(LIMIT_S)
    orphans = _gone_within(started, 10.0)
    for pid in orphans:  # do not leave them to the next test, even when failing
        os.kill(pid, signal.SIGKILL)
    assert orphans == set()
