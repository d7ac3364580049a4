"""JUnit XML: one ``testcase`` per check (``classname`` = scenario), for CI systems.

A failed check carries expected and observed, and the scenario's diagnosis; a scenario that timed
out or errored before (or besides) its checks is one more testcase with an ``error``; a skipped
scenario or check is ``skipped`` with its reason. Passwords are masked.
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

from celery_sim.core.brokers import mask_url
from celery_sim.scenarios.runner import RunReport
from celery_sim.scenarios.scenario import ScenarioResult, Status

__all__ = ["junit_xml", "write_junit"]


def _case(suite: ET.Element, classname: str, name: str, time_s: float) -> ET.Element:
    return ET.SubElement(suite, "testcase", classname=classname, name=name, time=f"{time_s:.3f}")


def _scenario_cases(suite: ET.Element, result: ScenarioResult) -> dict[str, int]:
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    per_check = result.duration_s / max(1, len(result.checks))
    if result.status is Status.SKIPPED:
        case = _case(suite, result.name, "(scenario)", 0.0)
        ET.SubElement(case, "skipped", message=mask_url(result.diagnosis or "skipped"))
        counts["tests"] += 1
        counts["skipped"] += 1
        return counts
    for check in result.checks:
        case = _case(suite, result.name, check.name, per_check)
        counts["tests"] += 1
        if check.skipped:
            ET.SubElement(case, "skipped", message=mask_url(str(check.observed)))
            counts["skipped"] += 1
        elif not check.passed:
            failure = ET.SubElement(
                case,
                "failure",
                message=mask_url(f"expected {check.expected!r}, observed {check.observed!r}"),
                type="CheckFailed",
            )
            failure.text = mask_url(
                f"expected: {check.expected!r}\nobserved: {check.observed!r}"
                + (f"\ndiagnosis: {result.diagnosis}" if result.diagnosis else "")
            )
            counts["failures"] += 1
    if result.status in (Status.TIMEOUT, Status.ERROR):
        case = _case(suite, result.name, "(scenario)", result.duration_s)
        error = ET.SubElement(
            case, "error", message=mask_url(result.diagnosis or result.status.value), type=result.status.value
        )
        error.text = mask_url(result.diagnosis or "")
        counts["tests"] += 1
        counts["errors"] += 1
    if result.warnings:
        out = ET.SubElement(suite[-1], "system-out") if len(suite) else None
        if out is not None:
            out.text = mask_url("\n".join(result.warnings))
    return counts


def junit_xml(report: RunReport) -> str:
    """The report as a JUnit XML document (one ``testsuite`` for the run)."""
    root = ET.Element("testsuites", name="celery_sim")
    suite = ET.SubElement(
        root,
        "testsuite",
        name=f"celery_sim on {mask_url(report.broker)}",
        timestamp=datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None).isoformat(),
        hostname=socket.gethostname(),
    )
    properties = ET.SubElement(suite, "properties")
    for key, shown in (("broker", report.broker), ("result_backend", report.result_backend), ("worker", report.worker)):
        ET.SubElement(properties, "property", name=key, value=mask_url(shown))
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for result in report.results:
        for key, count in _scenario_cases(suite, result).items():
            totals[key] += count
    for name in report.not_run:
        case = _case(suite, name, "(scenario)", 0.0)
        ET.SubElement(case, "skipped", message="not run: the run's deadline came first")
        totals["tests"] += 1
        totals["skipped"] += 1
    for element in (suite, root):
        for key, total in totals.items():
            element.set(key, str(total))
        element.set("time", f"{report.duration_s:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: Path, report: RunReport) -> None:
    path.write_text(junit_xml(report), encoding="utf-8")
