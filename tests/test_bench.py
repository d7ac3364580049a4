"""The benchmark runs and reports every figure (smoke test: no figure is asserted, as principle 5 asks)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    "rounds",
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


def test_a_batch_that_fails_is_a_note_and_the_other_figures_stay(monkeypatch: pytest.MonkeyPatch) -> None:
    """A set-up whose results time out at some N (as Celery's 5,000-result memory cache did at
    N = 10,000) keeps its latencies and smaller batches; the failure is named, not a lost run."""
    from contextlib import contextmanager

    from celery_sim.tools import bench

    class Late:
        def __init__(self, i: int) -> None:
            self.i = i

        def get(self, timeout: float) -> int:
            if self.i >= 50:  # only a batch bigger than 50 reaches it
                raise TimeoutError("The operation timed out.")
            return 2 * self.i

    @contextmanager
    def setup() -> Any:
        yield Late

    monkeypatch.setitem(bench.SETUPS, "flaky", ("a set-up whose bigger batches time out", setup))
    figures = bench.measure("flaky", [10, 100, 1000], samples=20, budget_s=5, idle_s=0.01)
    assert figures.p50_ms is not None and list(figures.per_task_us) == ["10"]
    assert figures.notes == ["N=100 failed: TimeoutError: The operation timed out."], figures.notes


def test_rounds_give_each_figure_as_the_median_and_keep_a_failed_round_as_a_note() -> None:
    from celery_sim.tools.bench import Figures, median_figures

    rounds = [
        Figures("memory", ready_s=0.03, p50_ms=0.9, per_task_us={"100": 700.0, "1000": 650.0}, notes=["slow"]),
        Figures("memory", error="exit 1: boom"),
        Figures("memory", ready_s=0.05, p50_ms=1.1, per_task_us={"100": 900.0}, notes=["slow", "N=1,000 skipped"]),
        Figures("memory", ready_s=0.04, p50_ms=0.7, per_task_us={"100": 800.0, "1000": 750.0}, notes=["slow"]),
    ]
    merged = median_figures(rounds)
    assert (merged.rounds, merged.error, merged.ready_s, merged.p50_ms) == (3, None, 0.04, 0.9)
    assert merged.per_task_us == {"100": 800.0, "1000": 700.0} and merged.p99_ms is None
    assert merged.notes == [
        "round 1: slow",
        "round 2: exit 1: boom",
        "round 3: slow",
        "round 3: N=1,000 skipped",
        "round 4: slow",
    ]
    assert median_figures(rounds[1:2]).error == "exit 1: boom"  # every round failed
    assert median_figures([rounds[0], rounds[3]]).notes == ["slow"]  # said by every round: once
    skipped = [
        Figures("ctw", p50_ms=4.0, notes=[f"N=1,000 skipped: about {s} s", f"N=10,000 skipped: about {10 * s} s"])
        for s in (47, 41)
    ]
    assert median_figures(skipped).notes == [
        "N=1,000 skipped: about 47 s (round 1; each round said so)",
        "N=10,000 skipped: about 470 s (round 1; each round said so)",
    ]
