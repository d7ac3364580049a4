"""``bench --scale``: throughput with 1, 2 and 4 ``celery worker`` processes on one queue.

Each worker is a real ``celery worker -P prefork`` process with its own node name, started as
``--worker process`` starts one (the command ``worker-command`` prints for ``--worker external``),
all consuming the run's ``default`` queue on a real broker. Two figures per count: tasks/s when
the caller reads every result (``delay()`` then ``get()``), and tasks/s of the work alone, with
``ignore_result=True`` (done when the workers' task-succeeded events have all arrived). Every
result and every event is checked. Celery itself is the distributed engine here: the same runs
go to workers on several machines with ``--worker external`` and one ``--run-id``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from time import monotonic
from typing import Any

__all__ = ["ScalePoint", "ScaleReport", "run_scale"]

#: Pool slots of each worker process (what a plain ``celery worker`` has on a 2-core machine).
SLOTS = 2


@dataclass
class ScalePoint:
    broker: str
    workers: int
    with_results_per_s: float | None = None
    without_results_per_s: float | None = None
    #: How many of the workers ran at least one of the fire-and-forget tasks.
    workers_used: int | None = None
    error: str | None = None


@dataclass
class ScaleReport:
    n: int
    points: list[ScalePoint] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "slots_per_worker": SLOTS, "points": [asdict(p) for p in self.points]}


def _point(url: str, label: str, workers: int, n: int, timeout: float) -> ScalePoint:
    from celery_sim.core.harness import Harness
    from celery_sim.scenarios.catalog import default_config, load_catalog

    load_catalog()
    point = ScalePoint(label, workers)
    with Harness(default_config(broker=url, worker="process", concurrency=SLOTS)) as h:
        for k in range(1, workers):
            h.start_worker(["default"], name=f"scale{k}", concurrency=SLOTS, kind="process")
        add = h.app.tasks["demos.calling.add"]
        add.delay(0, 0).get(timeout=timeout)  # every worker is up; the first call's connections too
        started = monotonic()
        results = [add.delay(i, i) for i in range(n)]
        values = [r.get(timeout=timeout) for r in results]
        point.with_results_per_s = n / (monotonic() - started)
        if values != [2 * i for i in range(n)]:
            raise AssertionError("wrong results")
        mark = h.timeline.mark()
        started = monotonic()
        ids = {add.apply_async((i, i), ignore_result=True).id for i in range(n)}
        deadline = started + timeout
        done: set[str] = set()
        position = mark
        while len(done) < n and monotonic() < deadline:
            # Woken by each new event; reads only the events since the last look (no busy loop
            # taking a core from the workers).
            h.timeline.wait_for(lambda e: True, timeout=0.5, since=position)
            now = h.timeline.mark()
            done |= {e.task_id for e in h.timeline.events(kinds=["succeeded"], since=position)} & ids
            position = now
        if len(done) < n:
            raise AssertionError(f"{n - len(done)} of {n} fire-and-forget tasks not done within {timeout:g} s")
        point.without_results_per_s = n / (monotonic() - started)
        point.workers_used = len({e.hostname for e in h.timeline.events(kinds=["succeeded"], since=mark)})
    return point


def run_scale(
    brokers: Sequence[tuple[str, str]],
    counts: Sequence[int],
    n: int,
    on_done: Callable[[ScalePoint], None],
    timeout: float = 120.0,
) -> ScaleReport:
    """Measure each (label, url) broker with each count of worker processes."""
    from celery_sim.core.brokers import resolve_broker
    from celery_sim.errors import BrokerError

    report = ScaleReport(n)
    for label, url in brokers:
        try:
            resolve_broker(url).preflight(timeout=2)
        except BrokerError as exc:
            point = ScalePoint(label, 0, error=f"not run: {exc}")
            report.points.append(point)
            on_done(point)
            continue
        for count in counts:
            try:
                point = _point(url, label, count, n, timeout)
            except Exception as exc:  # reported in the table, the others still run
                point = ScalePoint(label, count, error=f"{type(exc).__name__}: {exc}")
            report.points.append(point)
            on_done(point)
    return report
