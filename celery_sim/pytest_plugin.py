"""celery_sim's pytest plugin: your own Celery app on a real Celery worker in every test.

Registered as ``celery_sim`` (``pytest11`` entry point). Names are prefixed ``csim`` so that they
never collide with ``celery.contrib.pytest`` (``celery_app``, ``celery_worker``) or pytest-celery:

- ``csim``: a started :class:`~celery_sim.core.harness.Harness` around your app, stopped after the test.
  The test fails if it left work behind: a message in a queue, a task a worker still holds (an
  ETA, a retry), or a thread of the run.
- ``csim_app``: which app (override it, or set ``csim_app = module:attr`` in pytest's ini).
- ``csim_config``: the harness options of the test, from its ``@pytest.mark.csim(...)`` markers
  (``time_scale=``, ``queues=``, ``unconsumed=``, ``concurrency=``, ``extra_conf=``, ...).
- ``--csim-broker URL`` (or ini ``csim_broker``): run the same tests on ``fakeredis`` or a real
  Redis or RabbitMQ, instead of the in-process memory broker.

The plugin imports Celery only when a test uses these fixtures.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from time import monotonic
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from celery_sim.core.harness import Harness

__all__ = ["csim", "csim_app", "csim_config", "leftovers"]

#: How long threads of a stopped run get to end before the test is failed for leaving them.
THREAD_GRACE_S = 1.0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("celery_sim", "celery_sim: your Celery app under a real worker")
    group.addoption(
        "--csim-broker",
        metavar="URL",
        default=None,
        help="broker of the csim fixture: memory (default), fakeredis, or a redis:// or amqp:// URL",
    )
    group.addoption(
        "--csim-result-backend",
        metavar="URL",
        default=None,
        help="result backend with a real broker (default: the Redis broker itself, or Redis for RabbitMQ)",
    )
    parser.addini("csim_app", "module:attr of the Celery app the csim fixture runs", default="")
    parser.addini("csim_broker", "default of --csim-broker", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "csim(**options): options of this test's csim harness (time_scale=0.001, queues=(...), "
        "unconsumed=(...), concurrency=N, extra_conf={...}); the closest marker wins per option",
    )


@pytest.fixture
def csim_app(request: pytest.FixtureRequest) -> Any:
    """The Celery app the ``csim`` fixture runs: override this fixture, or set ini ``csim_app``."""
    path = str(request.config.getini("csim_app") or "")
    if not path:
        raise pytest.UsageError(
            "celery_sim: which Celery app? Set 'csim_app = yourpackage.celery:app' under [tool.pytest.ini_options] "
            "(or [pytest]), or define a fixture 'csim_app' returning your app in conftest.py"
        )
    return path


@pytest.fixture
def csim_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Harness options from the test's ``@pytest.mark.csim(...)`` markers (module, class, function)."""
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("csim"))):  # farthest first: the closest wins
        if marker.args:
            raise pytest.UsageError(f"@pytest.mark.csim takes keyword options only, got {marker.args!r}")
        options.update(marker.kwargs)
    return options


def leftovers(harness: Harness) -> list[str]:
    """What the run still holds: messages in its queues, tasks a worker received but did not end."""
    found: list[str] = []
    for queue in harness.known_queues():
        size = harness.queue_size(queue)
        if size:
            found.append(f"{size} message(s) in queue {harness.ns.logical(queue)!r}")
    timeline = harness.timeline
    for task_id, kind in timeline.last_kinds().items():
        if kind != "published":
            continue
        events = timeline.events(task_id)
        last_publish = max(i for i, e in enumerate(events) if e.kind == "published")
        held = [e for e in events[last_publish:] if e.kind in ("received", "started")]
        if held:
            state = "running" if held[-1].kind == "started" else "reserved or waiting for its ETA"
            found.append(f"task {events[0].name} {task_id} {state} on {held[-1].hostname}")
    return found


def _run_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    deadline = monotonic() + THREAD_GRACE_S
    while True:
        alive = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
        if not alive or monotonic() >= deadline:
            return alive
        alive[0].join(max(0.0, deadline - monotonic()))


@pytest.fixture
def csim(request: pytest.FixtureRequest, csim_app: Any, csim_config: dict[str, Any]) -> Iterator[Harness]:
    """A started harness running ``csim_app`` on a real Celery worker; the app is restored after."""
    from celery_sim.core.harness import Harness
    from celery_sim.core.workers.process import live_processes

    options = dict(csim_config)
    broker = request.config.getoption("csim_broker") or request.config.getini("csim_broker") or "memory"
    options.setdefault("broker", broker)
    backend = request.config.getoption("csim_result_backend")
    if backend:
        options.setdefault("result_backend", backend)
    before = set(threading.enumerate())
    processes_before = set(live_processes())
    harness = Harness(app=csim_app, **options)
    harness.start()
    left: list[str] = []
    try:
        yield harness
    finally:
        try:
            left = leftovers(harness) if harness.running else []
        finally:
            harness.stop()
    threads = _run_threads(before)
    left += [f"thread {t.name!r} still running" for t in threads]
    left += [f"worker process {pid} still running" for pid in live_processes() if pid not in processes_before]
    if left:
        pytest.fail(
            "celery_sim: the test left work behind: "
            + "; ".join(left)
            + ". Call csim.drain() to let it finish, or csim.purge() to discard queued messages.",
            pytrace=False,
        )
