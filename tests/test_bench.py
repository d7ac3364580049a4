"""The benchmark runs and reports every figure (smoke test: no figure is asserted, as principle 5 asks)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

FIGURES = {
    "ready_s",
    "ready_again_s",
    "p50_ms",
    "p99_ms",
    "per_task_us",
    "idle_cpu_s_per_2s",
    "stop_s",
    "rss_mib_per_1000",
    "error",
    "notes",
}


def test_bench_quick_measures_each_set_up_and_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "celery_sim",
            "bench",
            "--quick",
            "--setups",
            "memory,celery-test-worker-tuned,dramatiq-stub",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    data = json.loads(out.read_text())
    assert data["sizes"] == [100, 1000]
    by_setup = {f["setup"]: f for f in data["setups"]}
    assert list(by_setup) == ["memory", "celery-test-worker-tuned", "dramatiq-stub"]
    for name in ("memory", "celery-test-worker-tuned"):
        figures = by_setup[name]
        assert set(figures) - {"setup"} == FIGURES
        assert figures["error"] is None, figures
        assert all(
            figures[key] is not None
            for key in ("ready_s", "ready_again_s", "p50_ms", "p99_ms", "idle_cpu_s_per_2s", "stop_s")
        )
        assert "100" in figures["per_task_us"], figures
        # On a loaded machine the budget may skip N=1,000: then a note says so (never silently).
        if "1000" not in figures["per_task_us"]:
            assert any(note.startswith("N=1,000 skipped") for note in figures["notes"]), figures
            assert figures["rss_mib_per_1000"] is None
        else:
            assert figures["rss_mib_per_1000"] is not None
    assert "bench: delay().get() round trips" in completed.stdout
    assert re.search(r"x\d+\.\d\d", completed.stdout)  # each set-up against the default mode


def test_an_unknown_set_up_is_a_usage_error() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "celery_sim", "bench", "--setups", "memroy"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert "unknown set-up(s) 'memroy'; choose from: memory," in completed.stderr


@pytest.mark.real_broker
@pytest.mark.timeout(300)
def test_bench_scale_measures_1_2_and_4_worker_processes_on_each_real_broker(tmp_path: Path) -> None:
    from tests.test_real_brokers import REAL_BROKERS, need

    for url in REAL_BROKERS:
        need(url)
    out = tmp_path / "scale.json"
    completed = subprocess.run(
        [sys.executable, "-m", "celery_sim", "bench", "--scale", "--scale-n", "30", "--json", str(out)],
        capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    data = json.loads(out.read_text())
    assert data["n"] == 30 and data["slots_per_worker"] == 2
    points = [(p["broker"], p["workers"]) for p in data["points"]]
    assert points == [("redis", 1), ("redis", 2), ("redis", 4), ("amqp", 1), ("amqp", 2), ("amqp", 4)]
    for point in data["points"]:
        assert point["error"] is None, point  # every result was right, every task done
        assert point["with_results_per_s"] and point["without_results_per_s"], point
        assert 1 <= point["workers_used"] <= point["workers"], point
    assert "Scale-out" in completed.stdout
