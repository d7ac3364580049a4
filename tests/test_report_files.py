"""--junit and --html: the files a run writes, checked as their readers read them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from celery_sim.observe.timeline import Event
from celery_sim.reports.html import html_report, timeline_svg
from celery_sim.reports.junit import junit_xml
from celery_sim.scenarios.runner import RunReport
from celery_sim.scenarios.scenario import Check, ScenarioResult, Status

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = Path(__file__).with_name("schemas") / "junit-10.xsd"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def sample_report() -> RunReport:
    events = [
        Event("published", "t1", "demo.add", 0.00),
        Event("started", "t1", "demo.add", 0.01, "w@h"),
        Event("retried", "t1", "demo.add", 0.02, "w@h"),
        Event("published", "t1", "demo.add", 0.02),
        Event("started", "t1", "demo.add", 0.08, "w@h"),
        Event("succeeded", "t1", "demo.add", 0.09, "w@h"),
        Event("published", "t2", "demo.fail", 0.01),
    ]
    return RunReport(
        broker="redis://:secret@127.0.0.1:6379/0",
        result_backend="redis://:secret@127.0.0.1:6379/0",
        results=[
            ScenarioResult(
                "calling.add", "add runs", Status.PASSED, 0.05, [Check("result", True, 5, 5)], events=events
            ),
            ScenarioResult(
                "routing.lost",
                "a lost task",
                Status.FAILED,
                0.4,
                [Check("result", False, 5, None), Check("n/a here", True, "x", "not checked: memory", skipped=True)],
                diagnosis="no worker consumes queue 'reports'",
            ),
            ScenarioResult("time.slow", "too slow", Status.TIMEOUT, 1.0, diagnosis="still running <&> there"),
            ScenarioResult("beat.x", "skipped one", Status.SKIPPED, 0.0, diagnosis="not on rpc"),
        ],
        duration_s=1.5,
        not_run=["broker.last"],
    )


def test_the_junit_file_is_valid_against_the_common_schema_and_counts_right() -> None:
    lxml = pytest.importorskip("lxml.etree")
    text = junit_xml(sample_report())
    schema = lxml.XMLSchema(lxml.parse(str(SCHEMA)))
    document = lxml.fromstring(text.encode())
    schema.assertValid(document)
    suite = document.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        "6",
        "1",
        "1",
        "3",
    )
    failure = document.find(".//testcase[@classname='routing.lost'][@name='result']/failure")
    assert "expected 5, observed None" in failure.get("message")
    assert "diagnosis: no worker consumes queue 'reports'" in failure.text
    assert "secret" not in text


def test_the_html_file_is_self_contained_and_draws_every_task() -> None:
    text = html_report(sample_report())
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert all(f'id="{name}"' in text for name in ("calling.add", "routing.lost", "time.slow", "beat.x"))
    assert "secret" not in text and "still running &lt;&amp;&gt; there" in text
    svg = timeline_svg(sample_report().results[0].events)
    assert svg.count("<title>waiting for the retry</title>") == 1  # the retry's wait, between its attempts
    assert svg.count("<title>still queued</title>") == 1  # t2 never started


@pytest.mark.timeout(180)
def test_a_real_run_writes_both_and_chromium_renders_the_page(tmp_path: Path) -> None:
    if CHROMIUM is None:
        message = "Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CELERY_SIM_REQUIRE_CHROMIUM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    junit, page, data = tmp_path / "run.xml", tmp_path / "run.html", tmp_path / "run.json"
    completed = subprocess.run(
        [sys.executable, "-m", "celery_sim", "run", "calling", "canvas.chord", "retries.backoff",
         "--junit", str(junit), "--html", str(page), "--json", str(data)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    names = [s["name"] for s in json.loads(data.read_text())["scenarios"]]
    assert junit.read_text().count("<testcase") >= len(names)
    shot = tmp_path / "run.png"
    profile = tmp_path / "profile"
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
    ]  # fmt: skip
    dom = subprocess.run(
        [str(CHROMIUM), *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert all(f'id="{name}"' in dom.stdout for name in names)  # every scenario is in the rendered page
    assert "Uncaught" not in dom.stderr and "CONSOLE" not in dom.stderr, dom.stderr[-2000:]
    rendered = subprocess.run(
        [str(CHROMIUM), *flags, "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert rendered.returncode == 0 and shot.stat().st_size > 10_000, rendered.stderr[-2000:]
    keep = os.environ.get("CSIM_SCREENSHOT_DIR")
    if keep:  # CI keeps the screenshot of the run
        shutil.copy(shot, Path(keep) / "report.png")


@pytest.mark.timeout(300)
def test_the_matrix_page_shows_every_scenario_on_every_broker_and_renders(tmp_path: Path) -> None:
    page, data = tmp_path / "matrix.html", tmp_path / "matrix.json"
    completed = subprocess.run(
        [sys.executable, "-m", "celery_sim", "matrix", "calling.delay", "broker.visibility_timeout",
         "--html", str(page), "--json", str(data)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    matrix = json.loads(data.read_text())
    text = page.read_text()
    assert "<script" not in text and "SAME VERDICTS" in text
    reachable = [b for b in matrix["brokers"] if b["unreachable"] is None]
    assert text.count("<th>") == 1 + len(reachable)  # the scenario column, and one per broker
    rows = text.split('<table id="matrix">', 1)[1].split("</table>", 1)[0].split("<tr>")[2:]
    assert [row.split("</td>", 1)[0].removeprefix("<td>") for row in rows] == [
        "calling.delay",
        "broker.visibility_timeout",
    ]
    assert all(row.count("<td class=") == len(reachable) for row in rows)
    assert "≠ broker.visibility_timeout on memory" in text  # the declared difference, with its reason
    if CHROMIUM is not None:
        dom = subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert dom.returncode == 0 and 'id="matrix"' in dom.stdout, dom.stderr[-2000:]
        assert "Uncaught" not in dom.stderr, dom.stderr[-2000:]
