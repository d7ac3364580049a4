"""The benchmark: the same round trips through each set-up, side by side, each in its own process.

Set-ups: celery_sim's embedded brokers, each reachable real broker (embedded thread worker), and
Celery's own test worker (``celery.contrib.testing.worker.start_worker``) with its defaults and
tuned, plus Dramatiq's StubBroker when it is installed. Each runs in a fresh interpreter under a
time cap, so one that hangs is reported as such and the others are not disturbed. Every result is
checked; every set-up runs ``rounds`` times, interleaved, and each figure is the median of its
rounds. Figures: time to ready (and to ready again in the same process), p50/p99 of one
``delay().get()``, cost per task when N are sent at once, CPU used while idle, time to stop, and
memory (RSS) per 1,000 tasks.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from time import monotonic
from typing import Any

from celery_sim.core.brokers import DEFAULT_AMQP_URL, DEFAULT_REDIS_URL

__all__ = ["SETUPS", "BenchReport", "Figures", "measure", "median_figures", "run_bench"]

#: How long the bench lets a set-up idle to measure its CPU use (reported per 2 s).
IDLE_S = 1.0
Sender = Callable[[int], Any]  # add(i, i), returns something whose .get(timeout) gives 2 * i


@dataclass
class Figures:
    setup: str
    ready_s: float | None = None
    #: The same set-up started again in the same process, after the first stopped (what each test
    #: after the first pays in a test session).
    ready_again_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    #: N -> microseconds per task when N are sent at once, then all their results read.
    per_task_us: dict[str, float] = field(default_factory=dict)
    idle_cpu_s_per_2s: float | None = None
    stop_s: float | None = None
    rss_mib_per_1000: float | None = None
    error: str | None = None
    #: What was cut short to keep within the time budget (slow set-ups).
    notes: list[str] = field(default_factory=list)
    #: Rounds whose figures these are: each figure is the median of theirs (see :func:`run_bench`).
    rounds: int = 1


@dataclass
class BenchReport:
    """A bench run: the batch sizes and each set-up's figures."""

    sizes: list[int]
    setups: list[Figures]

    def to_json(self) -> dict[str, Any]:
        return {"sizes": list(self.sizes), "setups": [asdict(f) for f in self.setups]}


def _rss_mib() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@contextmanager
def _harness(broker: str, worker: str = "thread") -> Iterator[Sender]:
    from celery_sim.core.harness import Harness
    from celery_sim.scenarios.catalog import default_config, load_catalog

    load_catalog()
    with Harness(default_config(broker=broker, concurrency=2, worker=worker)) as h:
        add = h.app.tasks["demos.calling.add"]
        yield lambda i: add.delay(i, i)


@contextmanager
def _celery_test_worker(tuned: bool) -> Iterator[Sender]:
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    app = Celery("bench", broker="memory://", backend="cache+memory://", set_as_current=False)
    if tuned:
        app.conf.broker_transport_options = {"polling_interval": 0.001}
        # Celery's in-memory cache keeps 5,000 results (least recently used go first): in a batch of
        # 10,000 the first results can be gone before get() asks for them, a timeout. Tuned, it keeps all.
        from celery.backends import cache

        cache._DUMMY_CLIENT_CACHE.limit = None  # type: ignore[attr-defined]  # one bench process each
    import celery.contrib.testing.tasks  # noqa: F401  # its ping task, which start_worker sends

    @app.task(name="bench.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=True, shutdown_timeout=30):
        if tuned:  # the caller polls the result backend every 1 ms too (Celery's default: 0.5 s)
            yield lambda i: _Polled(add.delay(i, i))
        else:
            yield lambda i: add.delay(i, i)


class _Polled:
    def __init__(self, result: Any) -> None:
        self._result = result

    def get(self, timeout: float) -> Any:
        return self._result.get(timeout=timeout, interval=0.001)


class _Done:
    """What a Dramatiq actor call returns here: ``get()`` joins the stub broker's queue."""

    def __init__(self, broker: Any, worker: Any, value: int) -> None:
        self._broker, self._worker, self._value = broker, worker, value

    def get(self, timeout: float) -> int:
        self._broker.join("default", timeout=int(timeout * 1000))
        self._worker.join()
        return self._value


@contextmanager
def _dramatiq() -> Iterator[Sender]:
    import dramatiq
    from dramatiq.brokers.stub import StubBroker

    broker = StubBroker()
    seen: list[int] = []

    @dramatiq.actor(broker=broker, queue_name="default")  # type: ignore[untyped-decorator,unused-ignore]  # optional, untyped
    def add(x: int, y: int) -> None:
        seen.append(x + y)

    worker = dramatiq.Worker(broker, worker_threads=2)
    worker.start()
    try:
        yield lambda i: (add.send(i, i), _Done(broker, worker, 2 * i))[1]
    finally:
        worker.stop()


#: name -> (what it is, how to start it)
SETUPS: dict[str, tuple[str, Callable[[], Any]]] = {
    "memory": ("celery_sim default: embedded memory broker, thread worker", lambda: _harness("memory")),
    "fakeredis": ("celery_sim: embedded fakeredis broker", lambda: _harness("fakeredis")),
    "redis": ("celery_sim: real Redis 127.0.0.1:6379, thread worker", lambda: _harness(DEFAULT_REDIS_URL)),
    "amqp": (
        "celery_sim: real RabbitMQ 127.0.0.1:5672, thread worker",
        lambda: _harness(DEFAULT_AMQP_URL),
    ),
    "redis-prefork": (
        "celery_sim: real Redis, a `celery worker -P prefork` process (2 slots)",
        lambda: _harness(DEFAULT_REDIS_URL, "process"),
    ),
    "amqp-prefork": (
        "celery_sim: real RabbitMQ, a `celery worker -P prefork` process (2 slots)",
        lambda: _harness(DEFAULT_AMQP_URL, "process"),
    ),
    "celery-test-worker": (
        "Celery's start_worker, defaults (memory://, 1 s polling)",
        lambda: _celery_test_worker(False),
    ),
    "celery-test-worker-tuned": (
        "Celery's start_worker, polling_interval 1 ms, its memory result cache unbounded",
        lambda: _celery_test_worker(True),
    ),
    "dramatiq-stub": ("Dramatiq's StubBroker + join (if installed)", _dramatiq),
}


def measure(setup: str, sizes: Sequence[int], samples: int, budget_s: float, idle_s: float = IDLE_S) -> Figures:
    """Every figure of ``setup``, in this process (the bench runs each in its own).

    A slow set-up is sampled for at most ``budget_s`` (at least 3 round trips), and an N whose
    batch would take longer than that, judged by the N before it, is skipped with a note.
    """
    figures = Figures(setup)
    started = monotonic()
    context = SETUPS[setup][1]()
    send = context.__enter__()
    figures.ready_s = monotonic() - started
    try:
        latencies: list[float] = []
        until = monotonic() + budget_s
        while len(latencies) < samples and (len(latencies) < 3 or monotonic() < until):
            i = len(latencies)
            t0 = monotonic()
            value = send(i).get(timeout=30)
            latencies.append(monotonic() - t0)
            if value != 2 * i:
                raise AssertionError(f"add({i}, {i}) gave {value!r}")
        if len(latencies) < samples:
            figures.notes.append(f"{len(latencies)} round trips (of {samples}) within the {budget_s:g} s budget")
        latencies.sort()
        figures.p50_ms = statistics.median(latencies) * 1000
        figures.p99_ms = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        previous: float | None = None
        for n in sizes:
            if previous is not None and previous * n / 1e6 > budget_s:
                figures.notes.append(f"N={n:,} skipped: about {previous * n / 1e6:.0f} s at the cost of N before it")
                continue
            rss = _rss_mib()
            t0 = monotonic()
            results = [send(i) for i in range(n)]
            try:
                values = [r.get(timeout=max(30.0, 4 * budget_s)) for r in results]
            except Exception as exc:  # reported; the other figures still count
                figures.notes.append(f"N={n:,} failed: {type(exc).__name__}: {exc}")
                break
            previous = figures.per_task_us[str(n)] = (monotonic() - t0) / n * 1e6
            if values != [2 * i for i in range(n)]:
                raise AssertionError(f"wrong results at N={n}")
            if n == 1000:
                figures.rss_mib_per_1000 = _rss_mib() - rss
            del results, values
        cpu = time.process_time()
        time.sleep(idle_s)  # the subject: what the set-up costs while nothing happens
        figures.idle_cpu_s_per_2s = (time.process_time() - cpu) * 2.0 / idle_s
    finally:
        t0 = monotonic()
        context.__exit__(None, None, None)
        figures.stop_s = monotonic() - t0
    figures.ready_again_s = _ready_again(setup)
    return figures


def _ready_again(setup: str) -> float:
    """Time to ready of ``setup`` started again in this process (one round trip checked on it)."""
    started = monotonic()
    context = SETUPS[setup][1]()
    send = context.__enter__()
    ready = monotonic() - started
    try:
        if (value := send(21).get(timeout=30)) != 42:
            raise AssertionError(f"add(21, 21) gave {value!r} on the set-up started again")
    finally:
        context.__exit__(None, None, None)
    return ready


def _available(setup: str) -> str | None:
    """Why ``setup`` cannot run here, or None."""
    if setup == "dramatiq-stub":
        try:
            import dramatiq  # noqa: F401
        except ImportError:
            return "dramatiq is not installed (pip install dramatiq to include it)"
    if setup in ("redis", "amqp", "redis-prefork", "amqp-prefork"):
        from celery_sim.core.brokers import resolve_broker
        from celery_sim.errors import BrokerError

        url = DEFAULT_REDIS_URL if setup.startswith("redis") else DEFAULT_AMQP_URL
        try:
            resolve_broker(url).preflight(timeout=2)
        except BrokerError as exc:
            return str(exc)
    return None


def run_bench(
    setups: Sequence[str],
    sizes: Sequence[int],
    samples: int,
    budget_s: float,
    cap_s: float,
    on_done: Callable[[Figures, int], None],
    rounds: int = 1,
) -> list[Figures]:
    """Measure each set-up in a fresh interpreter, at most ``cap_s`` seconds each, ``rounds`` times.

    Rounds are interleaved (every set-up once, then again), so a machine that slows down for a
    while weighs on every set-up alike; each figure is the median of the rounds that gave it.
    ``on_done`` gets each set-up's figures of each round, and the round's number (from 1).
    """
    unavailable = {setup: _available(setup) for setup in setups}
    by_setup: dict[str, list[Figures]] = {setup: [] for setup in setups}
    for number in range(1, rounds + 1):
        for setup in setups:
            why = unavailable[setup]
            if why is not None:
                if number > 1:
                    continue
                figures = Figures(setup, error=f"not run: {why}")
            else:
                figures = _run_once(setup, sizes, samples, budget_s, cap_s)
            on_done(figures, number)
            by_setup[setup].append(figures)
    return [median_figures(found) for found in by_setup.values()]


def _run_once(setup: str, sizes: Sequence[int], samples: int, budget_s: float, cap_s: float) -> Figures:
    args = [sys.executable, "-m", __name__, setup, ",".join(map(str, sizes)), str(samples), str(budget_s)]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=cap_s, check=False)
    except subprocess.TimeoutExpired:
        return Figures(setup, error=f"did not finish within its cap of {cap_s:g} s (hung or too slow)")
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    figures = Figures(**json.loads(last)) if last.startswith("{") else Figures(setup)
    if done.returncode != 0 or not last.startswith("{"):
        figures.error = f"exit {done.returncode}: {done.stderr.strip()[-300:] or 'no output'}"
    return figures


_SCALARS = ("ready_s", "ready_again_s", "p50_ms", "p99_ms", "idle_cpu_s_per_2s", "stop_s", "rss_mib_per_1000")


def median_figures(found: Sequence[Figures]) -> Figures:
    """One set-up's figures over its rounds: each the median of the rounds that measured it.

    A round that failed is a note of the result (the error only when every round failed); a note
    every round made is said once, the others with their round.
    """
    good = [f for f in found if f.error is None]
    if not good:
        return found[0]
    merged = Figures(found[0].setup, rounds=len(good))
    for name in _SCALARS:
        values = [v for f in good if (v := getattr(f, name)) is not None]
        setattr(merged, name, statistics.median(values) if values else None)
    for n in dict.fromkeys(n for f in good for n in f.per_task_us):
        merged.per_task_us[n] = statistics.median(f.per_task_us[n] for f in good if n in f.per_task_us)
    said = [([figures.error] if figures.error else []) + figures.notes for figures in found]
    shapes = [{_shape(note): note for note in notes} for notes in said]
    everywhere = [shape for shape in shapes[0] if all(shape in round_shapes for round_shapes in shapes)]
    for shape in everywhere:  # said once, with each round's figures where they differ
        notes = [round_shapes[shape] for round_shapes in shapes]
        merged.notes.append(notes[0] if len(set(notes)) == 1 else f"{notes[0]} (round 1; each round said so)")
    for number, notes in enumerate(said, 1):
        merged.notes.extend(f"round {number}: {note}" for note in notes if _shape(note) not in everywhere)
    return merged


def _shape(note: str) -> str:
    """``note`` with its figures masked (what it is about, before its first colon, stays): the
    same note in two rounds, whatever each measured."""
    about, colon, rest = note.partition(": ")
    return about + colon + re.sub(r"\d[\d,.]*", "#", rest)


def _main(argv: list[str]) -> None:
    setup, sizes, samples, budget_s = argv[0], [int(n) for n in argv[1].split(",") if n], int(argv[2]), float(argv[3])
    # Imports first: "ready" is the time a set-up takes to start, not Python's to import Celery.
    import celery.contrib.testing.worker  # noqa: F401

    from celery_sim.core.harness import Harness  # noqa: F401
    from celery_sim.scenarios.catalog import load_catalog

    load_catalog()
    figures = measure(setup, sizes, samples, budget_s, idle_s=min(IDLE_S, budget_s))
    sys.stdout.write(json.dumps(asdict(figures)) + "\n")


if __name__ == "__main__":
    _main(sys.argv[1:])
