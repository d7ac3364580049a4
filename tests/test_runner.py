from __future__ import annotations

import io
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

from celery_sim.core.harness import Harness
from celery_sim.reports.console import render_report
from celery_sim.scenarios.catalog import default_config
from celery_sim.scenarios.runner import Runner, RunReport
from celery_sim.scenarios.scenario import Check, Context, Scenario, ScenarioResult, Status
from demos.calling.tasks import add
from demos.routing.tasks import nightly_export


def make(name: str, fn: Callable[[Context], None], timeout: float | None = None) -> Scenario:
    return Scenario(name, f"test scenario {name}", fn, timeout)


def passing(ctx: Context) -> None:
    ctx.check("add", 3, ctx.wait(add.delay(1, 2)))


def run(*scenarios: Scenario, **runner_options: Any) -> RunReport:
    return Runner(lambda: Harness(default_config()), **runner_options).run(list(scenarios))


def by_name(report: RunReport) -> dict[str, ScenarioResult]:
    return {r.name: r for r in report.results}


def test_a_stuck_scenario_is_cut_at_its_deadline_diagnosed_and_the_run_goes_on() -> None:
    def stuck(ctx: Context) -> None:
        nightly_export.delay().get()  # no timeout: the classic hang of a hand-written client

    report = run(make("test.stuck", stuck, timeout=0.3), make("test.after", passing))
    results = by_name(report)
    assert results["test.stuck"].status is Status.TIMEOUT
    assert "deadline 0.3s passed" in (results["test.stuck"].diagnosis or "")
    assert "no worker consumes queue 'reports_queue'" in (results["test.stuck"].diagnosis or "")
    assert results["test.after"].status is Status.PASSED
    assert report.counts() == {"passed": 1, "failed": 0, "timeout": 1, "skipped": 0, "error": 0}
    assert not report.ok


def test_a_scenario_that_ignores_cancellation_gets_a_fresh_harness_for_the_next_one() -> None:
    release = threading.Event()
    harnesses: list[str] = []

    def uncancellable(ctx: Context) -> None:
        harnesses.append(ctx.harness.ns.run_id)
        release.wait(30)  # blocks in C: the watchdog's exception cannot interrupt it

    def after(ctx: Context) -> None:
        harnesses.append(ctx.harness.ns.run_id)
        passing(ctx)

    try:
        report = run(make("test.uncancellable", uncancellable, timeout=0.2), make("test.after", after))
    finally:
        release.set()
    results = by_name(report)
    assert results["test.uncancellable"].status is Status.TIMEOUT
    assert "harness was rebuilt" in (results["test.uncancellable"].diagnosis or "")
    assert "the scenario's own code did not return" in (results["test.uncancellable"].diagnosis or "")
    assert results["test.after"].status is Status.PASSED
    assert harnesses[0] != harnesses[1]
    for thread in threading.enumerate():
        if thread.name == "csim-scenario-test.uncancellable":
            thread.join(5)


def test_a_failed_check_fails_the_scenario() -> None:
    def wrong(ctx: Context) -> None:
        ctx.check("add", 4, ctx.wait(add.delay(1, 2)))

    result = by_name(run(make("test.wrong", wrong)))["test.wrong"]
    assert result.status is Status.FAILED
    assert [(c.name, c.passed, c.expected, c.observed) for c in result.checks] == [("add", False, 4, 3)]


def test_a_scenario_without_checks_is_an_error() -> None:
    result = by_name(run(make("test.empty", lambda ctx: None)))["test.empty"]
    assert result.status is Status.ERROR
    assert "made no checks" in (result.diagnosis or "")


def test_an_exception_is_an_error_with_its_message() -> None:
    def broken(ctx: Context) -> None:
        raise ValueError("bad value 42")

    result = by_name(run(make("test.broken", broken)))["test.broken"]
    assert result.status is Status.ERROR
    assert result.diagnosis == "ValueError: bad value 42"


def test_a_skip_is_reported_with_its_reason() -> None:
    def skipping(ctx: Context) -> None:
        ctx.skip("needs RabbitMQ")

    result = by_name(run(make("test.skip", skipping)))["test.skip"]
    assert (result.status, result.diagnosis) == (Status.SKIPPED, "needs RabbitMQ")


def test_scenarios_not_started_before_the_run_deadline_are_skipped() -> None:
    def slow(ctx: Context) -> None:
        guarded = ctx.guard(nightly_export.delay(), timeout=0.3)
        ctx.check("timed out", True, guarded.timed_out)

    report = run(make("test.slow", slow), make("test.late", passing), run_timeout=0.2)
    results = by_name(report)
    assert results["test.slow"].status is Status.PASSED
    assert results["test.late"].status is Status.SKIPPED
    assert "run deadline" in (results["test.late"].diagnosis or "")


def test_ctrl_c_stops_the_run_cleanly_and_reports_what_ran() -> None:
    def interrupt(ctx: Context) -> None:
        ctx.check("about to interrupt", True, True)
        os.kill(os.getpid(), signal.SIGINT)
        while True:  # a Python-level wait, as in get(): the runner's cancellation interrupts it
            time.sleep(0.01)

    # A background job of a non-interactive shell (as CI may be) starts with SIGINT ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        report = run(make("test.first", passing), make("test.interrupt", interrupt), make("test.never", passing))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert report.interrupted
    assert [r.name for r in report.results] == ["test.first"]
    assert report.not_run == ["test.interrupt", "test.never"]
    assert not report.ok


def test_the_timeout_option_overrides_a_scenarios_own_deadline() -> None:
    def stuck(ctx: Context) -> None:
        ctx.wait(nightly_export.delay())

    result = by_name(run(make("test.stuck", stuck, timeout=30), timeout=0.2))["test.stuck"]
    assert result.status is Status.TIMEOUT
    assert (result.diagnosis or "").startswith("no worker consumes queue 'reports_queue'")


def test_json_report_has_the_documented_keys() -> None:
    report = run(make("test.pass", passing))
    data = report.to_json()
    assert set(data) == {"broker", "result_backend", "worker", "duration_s", "interrupted", "scenarios", "summary"}
    assert data["broker"] == "memory"
    (scenario,) = data["scenarios"]  # type: ignore[misc]
    assert set(scenario) == {"name", "family", "status", "duration_s", "checks", "diagnosis", "warnings", "difference"}
    assert scenario["family"] == "test"
    assert scenario["checks"] == [{"name": "add", "passed": True, "expected": 3, "observed": 3, "skipped": False}]
    assert data["summary"] == {"passed": 1, "failed": 0, "timeout": 0, "skipped": 0, "error": 0}


def _render(report: RunReport, **kwargs: bool) -> str:
    out = io.StringIO()
    render_report(Console(file=out, width=80, color_system=None), report, **kwargs)
    return out.getvalue()


def test_the_last_screen_shows_each_failing_check_whole_and_names_the_failed_scenarios() -> None:
    long_value = [f"item-{i:03d}" for i in range(40)]
    failed = ScenarioResult(
        "family.broken",
        "",
        Status.FAILED,
        0.01,
        [Check("fine", True, 1, 1), Check("the long one", False, long_value, long_value[:-1])],
    )
    errored = ScenarioResult("family.crashed", "", Status.ERROR, 0.0, diagnosis="RuntimeError: boom")
    report = RunReport("memory", [ScenarioResult("family.ok", "", Status.PASSED, 0.0), failed, errored], 1.0)
    text = _render(report)
    flat = "".join(text.split())
    assert "…" not in text
    assert "expected:" + "".join(repr(long_value).split()) in flat
    assert "observed:" + "".join(repr(long_value[:-1]).split()) in flat
    assert "fine" not in text  # passing checks stay out of the last screen
    assert "RuntimeError: boom" in text
    assert "Not passed: family.broken (failed), family.crashed (error)" in text
    assert "family.ok" not in text.split("Did not pass", 1)[1]


def test_an_interrupted_run_says_so_with_what_passed() -> None:
    report = RunReport(
        "memory", [ScenarioResult("family.ok", "", Status.PASSED, 0.0)], 1.0, interrupted=True, not_run=["family.next"]
    )
    text = _render(report)
    assert "INTERRUPTED  1 scenario(s): 1 passed" in text
    assert "NOT ALL PASSED" not in text
    assert "Not run: family.next" in text


def test_declared_lanes_run_side_by_side_each_on_its_own_harness_and_the_report_keeps_the_given_order() -> None:
    together = threading.Barrier(3, timeout=5.0)  # broken unless one scenario of each lane runs at once
    seen: dict[str, str] = {}

    def meeting(ctx: Context) -> None:
        seen[ctx.scenario.name] = ctx.harness.ns.run_id
        together.wait()
        passing(ctx)

    def alone(ctx: Context) -> None:
        seen[ctx.scenario.name] = ctx.harness.ns.run_id
        passing(ctx)

    scenarios = [
        Scenario("test.a1", "lane a, first", meeting, None, lane="a"),
        Scenario("test.main", "the main lane", meeting),
        Scenario("test.a2", "lane a, after a1", alone, None, lane="a"),
        Scenario("test.b", "lane b", meeting, None, lane="b"),
    ]
    report = run(*scenarios, lanes=True)
    assert [r.name for r in report.results] == ["test.a1", "test.main", "test.a2", "test.b"]
    assert all(r.status is Status.PASSED for r in report.results), [(r.name, r.diagnosis) for r in report.results]
    assert seen["test.a1"] == seen["test.a2"], "one lane, one harness"
    assert len({seen["test.a1"], seen["test.main"], seen["test.b"]}) == 3, "a harness per lane"


def test_without_lanes_declared_lanes_run_in_order_on_one_harness() -> None:
    seen: list[tuple[str, str]] = []

    def record(ctx: Context) -> None:
        seen.append((ctx.scenario.name, ctx.harness.ns.run_id))
        passing(ctx)

    run(Scenario("test.x", "lane x", record, None, lane="x"), make("test.main", record))
    assert [name for name, _ in seen] == ["test.x", "test.main"]
    assert len({run_id for _, run_id in seen}) == 1
