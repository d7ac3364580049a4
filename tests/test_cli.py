from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from celery_sim.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, cli


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


#: Each usage error: the arguments, what the message must say, and a secret it must not show.
USAGE_ERRORS = {
    "unknown scenario": (
        ["run", "calling.dleay"],
        "no scenario or family named 'calling.dleay'. Did you mean 'calling.delay'",
        None,
    ),
    "no names": (["run"], "name at least one scenario or family, e.g. `run calling", None),
    "misspelled family": (["run", "retrie"], "Did you mean 'retries'", None),
    "unknown broker": (["complete", "--broker", "memroy"], "unknown broker 'memroy'. Did you mean 'memory'?", None),
    "unreachable broker": (
        ["run", "calling.delay", "--broker", "amqp://admin:s3cret@127.0.0.1:1//"],
        "cannot reach the broker at amqp://admin:***@127.0.0.1:1//",
        "s3cret",
    ),
    "unreachable real broker": (
        ["run", "calling", "--real-broker", "redis://:hunter2@127.0.0.1:1/0"],
        "cannot reach the broker at redis://:***@127.0.0.1:1/0",
        "hunter2",
    ),
    "malformed broker URL": (["run", "calling", "--broker", "redis://localhost:port/0"], "malformed port", None),
    "non-positive timeout": (["run", "calling", "--timeout", "0"], "0 is not a positive number of seconds", None),
    "real broker given a name": (
        ["run", "calling", "--real-broker", "fakeredis"],
        "not 'fakeredis'; for an embedded broker use --broker fakeredis",
        None,
    ),
    "worker process on memory": (
        ["run", "calling", "--worker", "process"],
        "the memory broker lives in this process: use --broker fakeredis",
        None,
    ),
    "external workers on an embedded broker": (
        ["run", "calling", "--broker", "fakeredis", "--worker", "external"],
        "--worker external needs --real-broker URL",
        None,
    ),
    "result backend without a real broker": (
        ["run", "calling", "--result-backend", "rpc://"],
        "--result-backend needs a real broker",
        None,
    ),
    "unsupported result backend": (
        ["run", "calling", "--real-broker", "redis://127.0.0.1:1/0", "--result-backend", "mongodb://x"],
        "result backend 'mongodb://x' is not supported here",
        None,
    ),
    "malformed run id": (["run", "calling", "--run-id", "no spaces"], "use 1 to 32 letters, digits", None),
}


@pytest.mark.parametrize(("args", "says", "secret"), USAGE_ERRORS.values(), ids=USAGE_ERRORS.keys())
def test_a_usage_error_exits_2_with_a_message_that_names_the_fix(
    args: list[str], says: str, secret: str | None
) -> None:
    result = invoke(*args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert says in " ".join(result.output.split()), result.output
    if secret is not None:
        assert secret not in result.output


def test_run_a_family_passes_with_a_line_per_scenario_and_a_summary() -> None:
    result = invoke("run", "calling")
    assert result.exit_code == EXIT_OK, result.output
    assert "running 6 scenario(s): broker memory, results memory (embedded), worker thread" in " ".join(
        result.output.split()
    )
    assert "✔ passed  calling.delay" in result.output
    assert "Verified checks" not in result.output  # the table of every check is asked for with --checks all
    assert "ALL PASSED  6 scenario(s): 6 passed" in result.output


def test_checks_all_prints_the_table_of_every_check() -> None:
    result = invoke("run", "calling.delay", "--checks", "all")
    assert result.exit_code == EXIT_OK, result.output
    assert "Verified checks" in result.output


def test_json_output_has_the_stable_keys(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    result = invoke("run", "routing.unconsumed_queue", "calling.delay", "--json", str(path))
    assert result.exit_code == EXIT_OK, result.output
    data = json.loads(path.read_text())
    assert set(data) == {"broker", "result_backend", "worker", "duration_s", "interrupted", "scenarios", "summary"}
    assert (data["broker"], data["result_backend"], data["worker"]) == ("memory", "memory (embedded)", "thread")
    assert data["duration_s"] > 0 and data["interrupted"] is False
    assert [s["name"] for s in data["scenarios"]] == ["routing.unconsumed_queue", "calling.delay"]
    assert all(
        set(s) == {"name", "family", "status", "duration_s", "checks", "diagnosis", "warnings", "difference"}
        for s in data["scenarios"]
    )
    assert data["summary"]["passed"] == 2
    check = data["scenarios"][0]["checks"][0]
    assert set(check) == {"name", "passed", "expected", "observed", "skipped"}


def test_a_json_path_in_a_missing_directory_exits_2_before_running(tmp_path: Path) -> None:
    result = invoke("run", "calling", "--json", str(tmp_path / "missing" / "out.json"))
    assert result.exit_code == EXIT_USAGE
    assert "does not exist" in result.output


def test_a_timed_out_scenario_exits_1_named_in_the_summary_with_its_diagnosis() -> None:
    result = invoke("run", "calling.delay", "progress.states", "--timeout", "0.05")
    assert result.exit_code == EXIT_FAILED
    last_screen = result.output.split("Did not pass (1):", 1)[1]
    assert "⏱ timeout progress.states" in last_screen
    # Its diagnosis names the task and the worker it waits on (queued there, or still running).
    assert "'demos.progress.process_items'" in last_screen and "progress@csim-" in last_screen
    assert "NOT ALL PASSED" in last_screen
    assert "Not passed: progress.states (timeout)" in last_screen


def test_list_shows_every_scenario() -> None:
    result = invoke("list")
    assert result.exit_code == EXIT_OK
    for name in ("calling.delay", "calling.celery_call", "progress.states", "routing.unconsumed_queue"):
        assert name in result.output


def test_python_dash_m_runs_the_cli() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "celery_sim", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == EXIT_OK
    assert "Usage: python -m celery_sim" in completed.stdout
    for command in ("complete", "list", "run"):
        assert command in completed.stdout


def test_worker_command_prints_a_runnable_command_with_the_password_masked() -> None:
    result = invoke("worker-command", "--real-broker", "amqp://admin:s3cret@rabbit:5672//", "--run-id", "team1")
    assert result.exit_code == EXIT_OK, result.output
    assert result.output.strip() == (
        "CSIM_BROKER_URL='amqp://admin:***@rabbit:5672//' CSIM_RUN_ID=team1 CSIM_CONFIGURE=demos.config:configure celery -A celery_sim.core.workers.bootstrap "
        "worker -E -Q csim-team1.default,csim-team1.secretflow_queue,csim-team1.web_queue -n worker1@%h"
    )


def _run_without(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter where importing ``module`` fails, as on an install that lacks it."""
    code = (
        f"import sys; sys.modules[{module!r}] = None; sys.argv = ['celery-sim', *{list(args)!r}]; "
        "from celery_sim.cli import main; main()"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    "args",
    [
        ["complete"],
        ["run", "time.soft_limit"],
        ["run", "calling.delay", "--real-broker", "redis://:hunter2@127.0.0.1:6379/0"],
    ],
    ids=["complete on memory", "a prefork scenario", "a real Redis"],
)
def test_a_missing_module_is_named_with_its_install_command_and_exits_2(args: list[str]) -> None:
    completed = _run_without("packaging", *args)
    output = completed.stdout + completed.stderr
    assert completed.returncode == EXIT_USAGE, output
    assert "Python module 'packaging' is not installed" in output
    assert "pip install packaging" in output
    assert "cannot reach" not in output
    assert "hunter2" not in output
