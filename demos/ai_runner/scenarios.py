"""The Async AI Task Runner, run whole: its API served over real HTTP, its worker, its database.

The API (FastAPI, uvicorn) and the run's worker share a SQLite file in a temporary folder;
everything is read back over HTTP or from the stored rows and the run's timeline.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from statistics import median
from time import perf_counter
from typing import Any

from celery import Celery

from celery_sim.core.harness import Harness
from celery_sim.scenarios.scenario import Context, scenario
from demos.ai_runner.client import call
from demos.ai_runner.generate import chunks
from demos.apps import LANE, app_harness
from demos.config import RPC_NO_STORE
from demos.reported import reported

APP = "demos.ai_runner.celery_app:app"
GENERATE = "demos.ai_runner.run_ai_text_generation"
#: Concurrent POSTs here (50 in tests/test_ai_runner.py). Measured: on Redis (and fakeredis) a thread-pool
#: worker with the runner's acks_late and prefetch 1 takes a batch of pool-size tasks, then waits up
#: to 2 s before the next: Celery's blocking loop (``synloop``) notices the acks only when its
#: ``drain_events(timeout=2.0)`` returns. A prefork worker (its event loop) does not wait.
CONCURRENT_POSTS = 8


@contextlib.contextmanager
def _database() -> Iterator[str]:
    """A SQLite file for this run, named in ``AI_RUNNER_DATABASE_URL`` (worker processes inherit it)."""
    from demos.ai_runner.db import dispose

    before = os.environ.get("AI_RUNNER_DATABASE_URL")
    with tempfile.TemporaryDirectory(prefix="csim-ai-") as folder:
        url = f"sqlite:///{folder}/ai_runner.db"
        os.environ["AI_RUNNER_DATABASE_URL"] = url
        try:
            yield url
        finally:
            dispose(url)
            if before is None:
                os.environ.pop("AI_RUNNER_DATABASE_URL", None)
            else:
                os.environ["AI_RUNNER_DATABASE_URL"] = before


@scenario(
    "demo.ai_runner",
    "the AI task runner over real HTTP: POST /tasks answers 201 at once, the worker generates in chunks with "
    "progress, network errors retry and ValueError fails at once, redelivery is idempotent, no row lost",
    skip_on=RPC_NO_STORE,
    timeout=60.0,
    lane=LANE,
)
def ai_runner(ctx: Context) -> None:
    from demos.ai_runner.api import create_app
    from demos.ai_runner.server import ApiServer

    with _database() as url, app_harness(ctx, APP) as h, ApiServer(create_app(url)) as server:
        for step in (_lifecycle, _errors, _redelivery, _many):
            step(ctx, h, server.url)
        with _broken_broker() as broken, ApiServer(create_app(url, broken)) as down:
            status, body = call("POST", down.url + "/tasks", {"prompt": "hello"})
            stored = call("GET", f"{down.url}/tasks/{body.get('id')}")[1]
            ctx.check(
                "broker down: the API still answers 201 and the row says why",
                (201, "FAILED", "enqueue failed"),
                (status, stored.get("status"), str(stored.get("error"))[:14]),
            )


def _until_done(ctx: Context, h: Harness, base: str, created: dict[str, Any]) -> dict[str, Any]:
    """The row over HTTP once its Celery task has ended (the row is final before the worker stores
    the task's end; waiting on the result is event-driven, polling the API is not)."""
    ctx.outcome(h.app.AsyncResult(created["celery_id"]))
    return dict(call("GET", f"{base}/tasks/{created['id']}")[1])


def _lifecycle(ctx: Context, h: Harness, base: str) -> None:
    took = []
    for _ in range(5):
        started = perf_counter()
        status, body = call("POST", base + "/tasks", {"prompt": "write a haiku about queues", "model": "demo-large"})
        took.append((perf_counter() - started) * 1000)
    ctx.warn(f"POST /tasks: median {median(took):.1f} ms over {len(took)} (first {took[0]:.1f} ms)")
    ctx.check("POST /tasks", (201, "PENDING"), (status, body.get("status")))
    row = _until_done(ctx, h, base, body)
    expected = " ".join(chunks("write a haiku about queues", "demo-large"))
    ctx.check(
        "GET /tasks/{id} when done",
        {"status": "COMPLETED", "celery_state": "SUCCESS", "progress": 100, "result": expected},
        {k: row.get(k) for k in ("status", "celery_state", "progress", "result")},
    )
    progress = reported(ctx, body["celery_id"], "progress", 5)
    ctx.check("progress as it went (update_state)", [20, 40, 60, 80, 100], progress)
    queues = {h.ns.logical(str(e.data.get("queue"))) for e in ctx.events(body["celery_id"], ["published"])}
    ctx.check("routed to", {"ai_processing"}, queues)
    urgent = call("POST", base + "/tasks", {"prompt": "now", "priority": "urgent"})[1]
    _until_done(ctx, h, base, urgent)
    queues = {h.ns.logical(str(e.data.get("queue"))) for e in ctx.events(urgent["celery_id"], ["published"])}
    ctx.check("priority urgent routed to", {"urgent"}, queues)


def _errors(ctx: Context, h: Harness, base: str) -> None:
    ctx.check("GET an unknown id", 404, call("GET", base + "/tasks/no-such-id")[0])
    for what, body in (("no prompt", {"model": "demo-small"}), ("empty prompt", {"prompt": ""}), ("not JSON", b"{")):
        ctx.check(f"POST with {what}", 422, call("POST", base + "/tasks", body)[0])
    with h.time_scale(0.001):  # the backoff's 1 s, 2 s take 1 ms, 2 ms
        flaky = call("POST", base + "/tasks", {"prompt": "[network-error x2] summarise"})[1]
        row = _until_done(ctx, h, base, flaky)
    retried = len(ctx.events(flaky["celery_id"], ["retried"]))
    ctx.check("network errors: retried, then COMPLETED", ("COMPLETED", 2, 3), (row["status"], retried, row["attempts"]))
    bad = call("POST", base + "/tasks", {"prompt": "hello", "model": "gpt-9"})[1]
    row = _until_done(ctx, h, base, bad)
    ctx.check(
        "ValueError (unsupported model): FAILED at once, no retry",
        ("FAILED", "FAILURE", 0, "ValueError: unsupported model 'gpt-9'"),
        (row["status"], row["celery_state"], len(ctx.events(bad["celery_id"], ["retried"])), str(row["error"])[:37]),
    )


def _redelivery(ctx: Context, h: Harness, base: str) -> None:
    """The message a redelivery would bring again (same row, same arguments): nothing is generated twice."""
    body = call("POST", base + "/tasks", {"prompt": "once only"})[1]
    first = _until_done(ctx, h, base, body)
    again = ctx.wait(h.app.send_task(GENERATE, args=[body["id"], "once only", "demo-small"]))
    row = call("GET", f"{base}/tasks/{body['id']}")[1]
    ctx.check(
        "delivered twice: generated once, same text",
        (1, True, first["result"]),
        (row["generations"], again.get("repeated"), row["result"]),
    )


def _many(ctx: Context, h: Harness, base: str) -> None:
    with ThreadPoolExecutor(max_workers=CONCURRENT_POSTS) as pool:
        answers = list(
            pool.map(lambda i: call("POST", base + "/tasks", {"prompt": f"row {i}"}), range(CONCURRENT_POSTS))
        )
    created = [body for status, body in answers if status == 201]
    rows = [_until_done(ctx, h, base, body) for body in created]
    ctx.check(
        f"{CONCURRENT_POSTS} concurrent POSTs: every row COMPLETED",
        (CONCURRENT_POSTS, CONCURRENT_POSTS),
        (len(created), sum(1 for r in rows if r["status"] == "COMPLETED")),
    )


@contextlib.contextmanager
def _broken_broker() -> Iterator[Celery]:
    """A client whose broker is down (nothing listens on port 1)."""
    client = Celery("ai-runner-broken", broker="redis://127.0.0.1:1/0", backend="cache+memory://", set_as_current=False)
    # kombu retries a refused connection before the publish fails (2 s, measured); a client
    # that must answer at once sets max_retries 0 (0.13 s, measured).
    client.conf.broker_transport_options = {"max_retries": 0}
    try:
        yield client
    finally:
        client.close()
