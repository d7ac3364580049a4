"""The pytest plugin, run as a user runs it: pytest in a fresh process on a project of their own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.test_real_brokers import need

ROOT = Path(__file__).resolve().parents[1]

APP = """
from celery import Celery

app = Celery("mini", broker="redis://127.0.0.1:1/0", backend="redis://127.0.0.1:1/0")
app.conf.task_routes = {"mini.report": {"queue": "reports"}}


@app.task(name="mini.add")
def add(x, y):
    return x + y


@app.task(name="mini.report")
def report():
    return "done"
"""


def pytest_in(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{project}{os.pathsep}{ROOT}"}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "mini.py").write_text(APP)
    (tmp_path / "pytest.ini").write_text("[pytest]\ncsim_app = mini:app\n")
    return tmp_path


def write_tests(project: Path, body: str) -> None:
    (project / "test_mini.py").write_text("import pytest\nimport mini\n\n" + textwrap.dedent(body))


def test_the_ini_names_the_app_and_the_fixture_runs_its_tasks(project: Path) -> None:
    write_tests(
        project,
        """
        def test_add(csim):
            assert mini.add.delay(2, 3).get(timeout=5) == 5
            csim.expect(mini.add.delay(1, 1).id)
            csim.drain(timeout=5)
        """,
    )
    run = pytest_in(project)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout


def test_a_test_that_leaves_a_message_behind_fails_with_what_it_left(project: Path) -> None:
    write_tests(
        project,
        """
        @pytest.mark.csim(unconsumed=("reports",))
        def test_forgets(csim):
            mini.report.delay()

        @pytest.mark.csim(unconsumed=("reports",))
        def test_cleans_up(csim):
            mini.report.delay()
            assert csim.purge() == 1
        """,
    )
    run = pytest_in(project)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "2 passed, 1 error" in run.stdout, run.stdout  # the error: test_forgets, at teardown
    assert "the test left work behind: 1 message(s) in queue 'reports'" in run.stdout
    assert "ERROR test_mini.py::test_forgets" in run.stdout


def test_the_failure_message_of_drain_is_the_diagnosis(project: Path) -> None:
    write_tests(
        project,
        """
        @pytest.mark.csim(unconsumed=("reports",))
        def test_stuck(csim):
            mini.report.delay()
            try:
                csim.drain(timeout=0.3)
            finally:
                csim.purge()

        def test_unknown(csim):
            csim.app.send_task("mini.ad", args=(1, 2))
            csim.drain(timeout=5)
        """,
    )
    run = pytest_in(project)
    assert run.returncode == 1
    assert "no worker consumes queue 'reports': 'mini.report' was routed there" in run.stdout, run.stdout
    assert "NotRegistered" in run.stdout and "'mini.ad'" in run.stdout


def test_without_an_app_the_user_is_told_how_to_name_it(project: Path) -> None:
    (project / "pytest.ini").write_text("[pytest]\n")
    write_tests(project, "def test_x(csim):\n    pass\n")
    run = pytest_in(project)
    assert run.returncode != 0
    assert "csim_app = yourpackage.celery:app" in run.stdout + run.stderr


def test_markers_and_options_are_declared(project: Path) -> None:
    run = pytest_in(project, "--markers")
    assert "@pytest.mark.csim(**options)" in run.stdout
    run = pytest_in(project, "--help")
    assert "--csim-broker=URL" in run.stdout


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "amqp://guest:guest@127.0.0.1:5672//"], ids=["redis", "rabbitmq"]
)
def test_the_example_projects_tests_pass_on_a_real_broker_and_leave_nothing(url: str) -> None:
    need(url)
    from tests.test_broker_traces import snapshot

    state = snapshot(url)
    before = state()
    run = pytest_in(ROOT, "demos/shop/tests", f"--csim-broker={url}")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "6 passed" in run.stdout
    after = state()
    assert sorted(after - before) == []  # nothing new
    # Nothing of anyone else's removed, but for overdue binding deadlines kombu's own sweep
    # deletes (any consumer of an expiring queue sweeps every overdue one on the server).
    assert sorted(item for item in before - after if not item.startswith("deadline ")) == []
