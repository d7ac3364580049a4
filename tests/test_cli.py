from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result

from celery_sim.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, cli


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_run_a_family_passes_and_prints_the_table() -> None:
    result = invoke("run", "calling")
    assert result.exit_code == EXIT_OK, result.output
    assert "Verified checks" in result.output
    assert "ALL PASSED  6 scenario(s): 6 passed" in result.output


def test_json_output_has_the_stable_keys(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    result = invoke("run", "routing.unconsumed_queue", "calling.delay", "--json", str(path))
    assert result.exit_code == EXIT_OK, result.output
    data = json.loads(path.read_text())
    assert set(data) == {"broker", "scenarios", "summary"}
    assert [s["name"] for s in data["scenarios"]] == ["routing.unconsumed_queue", "calling.delay"]
    assert all(
        set(s) == {"name", "family", "status", "duration_s", "checks", "diagnosis", "warnings", "difference"}
        for s in data["scenarios"]
    )
    assert data["summary"]["passed"] == 2
    check = data["scenarios"][0]["checks"][0]
    assert set(check) == {"name", "passed", "expected", "observed"}


def test_an_unknown_scenario_suggests_the_closest_names_and_exits_2() -> None:
    result = invoke("run", "calling.dleay")
    assert result.exit_code == EXIT_USAGE
    assert "no scenario or family named 'calling.dleay'. Did you mean 'calling.delay'" in result.output


def test_an_unknown_broker_suggests_a_name_and_exits_2() -> None:
    result = invoke("complete", "--broker", "memroy")
    assert result.exit_code == EXIT_USAGE
    assert "unknown broker 'memroy'. Did you mean 'memory'?" in result.output


def test_an_unreachable_broker_fails_fast_with_the_password_masked() -> None:
    result = invoke("run", "calling.delay", "--broker", "amqp://admin:s3cret@127.0.0.1:1//")
    assert result.exit_code == EXIT_USAGE
    assert "cannot reach the broker at amqp://admin:***@127.0.0.1:1//" in result.output
    assert "s3cret" not in result.output


def test_a_malformed_broker_url_exits_2() -> None:
    result = invoke("run", "calling", "--broker", "redis://localhost:port/0")
    assert result.exit_code == EXIT_USAGE
    assert "malformed port" in result.output


def test_a_non_positive_timeout_exits_2() -> None:
    result = invoke("run", "calling", "--timeout", "0")
    assert result.exit_code == EXIT_USAGE
    assert "0 is not a positive number of seconds" in result.output


def test_a_json_path_in_a_missing_directory_exits_2_before_running(tmp_path: Path) -> None:
    result = invoke("run", "calling", "--json", str(tmp_path / "missing" / "out.json"))
    assert result.exit_code == EXIT_USAGE
    assert "does not exist" in result.output


def test_a_timed_out_scenario_exits_1_with_its_diagnosis() -> None:
    result = invoke("run", "progress.states", "--timeout", "0.05")
    assert result.exit_code == EXIT_FAILED
    assert "timeout" in result.output
    assert "NOT ALL PASSED" in result.output


def test_run_without_names_is_a_usage_error() -> None:
    assert invoke("run").exit_code == EXIT_USAGE


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


def test_real_broker_takes_a_url_not_a_name() -> None:
    result = invoke("run", "calling", "--real-broker", "fakeredis")
    assert result.exit_code == EXIT_USAGE
    assert "--real-broker takes a URL" in result.output
    assert "for an embedded broker use --broker fakeredis" in result.output


def test_an_unreachable_real_broker_is_a_usage_error_with_the_password_masked() -> None:
    result = invoke("run", "calling", "--real-broker", "redis://:hunter2@127.0.0.1:1/0")
    assert result.exit_code == EXIT_USAGE
    assert "cannot reach the broker at redis://:***@127.0.0.1:1/0" in result.output
    assert "hunter2" not in result.output


def test_a_worker_process_needs_a_broker_other_processes_reach() -> None:
    result = invoke("run", "calling", "--worker", "process")
    assert result.exit_code == EXIT_USAGE
    assert "the memory broker lives in this process: use --broker fakeredis" in result.output


def test_external_workers_cannot_reach_an_embedded_broker() -> None:
    result = invoke("run", "calling", "--broker", "fakeredis", "--worker", "external")
    assert result.exit_code == EXIT_USAGE
    assert "--worker external needs --real-broker URL" in result.output


def test_a_result_backend_needs_a_real_broker_and_a_known_scheme() -> None:
    embedded = invoke("run", "calling", "--result-backend", "rpc://")
    assert embedded.exit_code == EXIT_USAGE
    assert "--result-backend needs a real broker" in embedded.output
    unknown = invoke("run", "calling", "--real-broker", "redis://127.0.0.1:1/0", "--result-backend", "mongodb://x")
    assert unknown.exit_code == EXIT_USAGE
    assert "result backend 'mongodb://x' is not supported here" in unknown.output


def test_a_malformed_run_id_exits_2() -> None:
    result = invoke("run", "calling", "--run-id", "no spaces")
    assert result.exit_code == EXIT_USAGE
    assert "use 1 to 32 letters, digits" in result.output


def test_worker_command_prints_a_runnable_command_with_the_password_masked() -> None:
    result = invoke("worker-command", "--real-broker", "amqp://admin:s3cret@rabbit:5672//", "--run-id", "team1")
    assert result.exit_code == EXIT_OK, result.output
    assert result.output.strip() == (
        "CSIM_BROKER_URL='amqp://admin:***@rabbit:5672//' CSIM_RUN_ID=team1 celery -A celery_sim.worker_app "
        "worker -E -Q csim-team1.default,csim-team1.secretflow_queue,csim-team1.web_queue -n worker1@%h"
    )
