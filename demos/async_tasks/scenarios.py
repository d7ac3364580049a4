"""Async tasks, checked: a guide's ``async def`` task fails in Celery 5.7; the working pattern streams.

``demo.async_truth``: Celery calls the coroutine function, gets a coroutine object, and fails to
serialize it as the result (``EncodeError``); the body never runs, and Python warns "coroutine
... was never awaited" when the coroutine is finalized (measured: once the worker is stopped, as
the failure's traceback keeps it alive). An ``AsyncResult`` cannot be awaited either.

``demo.async_pattern``: a sync task runs its coroutine on its thread's long-lived loop; inside,
real async I/O (concurrent TCP fetches from the caller's chunk server) and each chunk published on
Redis pub/sub as it arrives, read by the caller while the task still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import json
import os
import socketserver
import tempfile
import threading
import types
import uuid
import warnings
from collections.abc import Coroutine, Iterator
from pathlib import Path
from time import monotonic
from typing import Any

import redis

from celery_sim.core.harness import Harness
from celery_sim.embedded.fakeredis_server import FakeRedisServer
from celery_sim.scenarios.scenario import Context, scenario
from demos.apps import LANE, app_harness

APP = "demos.async_tasks.celery_app:app"
WORDS = ["celery", "runs", "coroutines", "on", "one", "loop"]
HELD = "loop"  # the chunk server holds this reply until the caller has read a chunk
STREAM_TIMEOUT_S = 10.0


@scenario(
    "demo.async_truth",
    "a guide's `async def` task in Celery 5.7: EncodeError (a coroutine is not JSON serializable), the body "
    "never runs, 'never awaited'; and an AsyncResult cannot be awaited",
    lane=LANE,
)
def async_truth(ctx: Context) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with app_harness(ctx, APP) as h:  # its own: the coroutine is dropped only when its worker stops
            _truth(ctx, h)
            thread = h.config.worker == "thread"
        gc.collect()  # the worker's failure kept the coroutine alive; with the worker gone, it is finalized
        # Whoever keeps the failure's traceback keeps the coroutine (a log handler that stores records,
        # as pytest's does): then Python has not finalized it yet, and it is found unstarted instead.
        # Looked for while the warnings are still recorded: a coroutine finalized later (by a collection
        # another lane's thread triggers) would otherwise warn unrecorded after being looked for in vain.
        unstarted = [c for c in _native_coroutines() if inspect.getcoroutinestate(c) == inspect.CORO_CREATED]
    if not thread:
        ctx.skip_check("never awaited", "never awaited", "the worker process prints it on its stderr, not seen here")
        return
    said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    for coroutine in unstarted:
        coroutine.close()  # never started: closed now, it is not reported again when finally dropped
    observed = said if "coroutine 'native' was never awaited" in said else [f"{len(unstarted)} unstarted"]
    ctx.check(
        "never awaited: Python warns, or the coroutine is found unstarted",
        "coroutine 'native' was never awaited",
        observed,
        passed="coroutine 'native' was never awaited" in said or bool(unstarted),
    )


def _native_coroutines() -> list[Coroutine[Any, Any, Any]]:
    """The live coroutine objects of the ``native`` task's function."""
    return [
        found
        for found in gc.get_objects()
        if isinstance(found, types.CoroutineType)
        and found.cr_code.co_name == "native"
        and found.cr_code.co_filename.endswith(os.path.join("async_tasks", "tasks.py"))
    ]


def _truth(ctx: Context, h: Harness) -> None:
    with tempfile.TemporaryDirectory(prefix="csim-async-") as folder:
        marker = Path(folder) / "ran"
        state, error = ctx.outcome(h.app.send_task("demos.async_tasks.native", [str(marker)]))
        ctx.check(
            "the task fails",
            ("FAILURE", "EncodeError", "Object of type coroutine is not JSON serializable"),
            (state, type(error).__name__, str(error)),
            passed=state == "FAILURE"
            and type(error).__name__ == "EncodeError"
            and "coroutine is not JSON serializable" in str(error),
        )
        ctx.check("the body never ran", False, marker.exists())

    async def awaiting() -> Any:
        return await h.app.AsyncResult(str(uuid.uuid4()))  # type: ignore[misc]

    try:
        asyncio.run(awaiting())
        observed = "awaited"
    except TypeError as exc:
        observed = str(exc)
    ctx.check(
        "await AsyncResult",
        "TypeError: ... can't be used in 'await' expression",
        observed,
        passed="await" in observed and observed != "awaited",
    )


class _ChunkServer(socketserver.ThreadingTCPServer):
    """Answers a word with the word upper-cased, once ``expect`` connections are open together (or
    after STREAM_TIMEOUT_S: fetches made one after another show as ``most_open`` 1); holds the reply
    to HELD until ``release`` is set."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64  # every fetch connects at once (the default backlog, 5, delays the sixth)

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ChunkHandler)
        self.release = threading.Event()
        self.together = threading.Condition()
        self.expect = 1
        self.gathered = False
        self.open = 0
        self.most_open = 0


class _ChunkHandler(socketserver.StreamRequestHandler):
    server: _ChunkServer

    def handle(self) -> None:
        server = self.server
        with server.together:
            server.open += 1
            server.most_open = max(server.most_open, server.open)
            if server.open >= server.expect:
                server.gathered = True  # latched: those that reply first must not un-gather the rest
                server.together.notify_all()
            server.together.wait_for(lambda: server.gathered, STREAM_TIMEOUT_S / 2)
        try:
            word = self.rfile.readline().decode().strip()
            if word == HELD:
                server.release.wait(STREAM_TIMEOUT_S)
            self.wfile.write(word.upper().encode() + b"\n")
        finally:
            with server.together:
                server.open -= 1


@contextlib.contextmanager
def _pubsub_url(ctx: Context, h: Harness) -> Iterator[str]:
    """A Redis for the stream: the run's own (broker or result backend), else a private fakeredis."""
    for url in (str(h.app.conf.broker_url), str(h.app.conf.result_backend)):
        if url.startswith("redis+socket://"):
            yield "unix://" + url.removeprefix("redis+socket://")
            return
        if url.startswith(("redis://", "rediss://")):
            yield url
            return
    server = FakeRedisServer.start(h.ns.run_id + "-stream")
    try:
        yield "unix://" + server.path
    finally:
        server.stop()


@scenario(
    "demo.async_pattern",
    "the pattern that works: a sync task runs its coroutine on its thread's own loop (reused, not one per task), "
    "fetches chunks concurrently over TCP and streams each to the caller over Redis pub/sub while it runs",
    lane=LANE,
)
def async_pattern(ctx: Context) -> None:
    with app_harness(ctx, APP) as h:
        _pattern(ctx, h)


def _pattern(ctx: Context, h: Harness) -> None:
    server = _ChunkServer()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        with _pubsub_url(ctx, h) as url:
            _stream(ctx, h, server, url)
            _reuse(ctx, h, server, url)
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


def _stream(ctx: Context, h: Harness, server: _ChunkServer, url: str) -> None:
    channel = h.ns.queue(f"stream-{uuid.uuid4().hex[:8]}")
    client = redis.Redis.from_url(url)
    pubsub = client.pubsub()
    try:
        pubsub.subscribe(channel)
        pubsub.get_message(timeout=1.0)  # the subscribe confirmation
        host, port = server.server_address[:2]
        server.expect, server.gathered = len(WORDS), False
        result = h.app.send_task("demos.async_tasks.stream_words", [WORDS, host, port, url, channel])
        received: list[dict[str, Any]] = []
        state_at_first: str | None = None
        deadline = monotonic() + STREAM_TIMEOUT_S
        while monotonic() < deadline and not (received and "done" in received[-1]):
            message = pubsub.get_message(timeout=0.5)
            if message is None or message["type"] != "message":
                continue
            received.append(json.loads(message["data"]))
            if state_at_first is None:
                state_at_first = str(result.state)
                server.release.set()  # only now may the task's last fetch end
            ctx.progress("chunks", len(received), len(WORDS) + 1)
        chunks = [m["chunk"] for m in received if "chunk" in m]
        ctx.check(
            "every chunk streamed, then done",
            (sorted(w.upper() for w in WORDS), len(WORDS)),
            (sorted(chunks), received[-1].get("done") if received else None),
        )
        ctx.check(
            "the first chunk arrived while the task ran",
            "not ready",
            state_at_first,
            passed=state_at_first not in (None, "SUCCESS", "FAILURE"),
        )
        ctx.check(
            "the fetches were in flight at once (connections open together)",
            f">= {len(WORDS)}",
            server.most_open,
            passed=server.most_open >= len(WORDS),
        )
        done = ctx.wait(result)
        ctx.check("the task returns the chunks it streamed", sorted(chunks), sorted(done["chunks"]))
    finally:
        pubsub.close()
        client.close()


def _reuse(ctx: Context, h: Harness, server: _ChunkServer, url: str) -> None:
    """More tasks than pool slots: each slot's loop is made once and reused."""
    slots = h.main_concurrency
    host, port = server.server_address[:2]
    server.expect, server.gathered = 1, False
    runs = [
        ctx.wait(h.app.send_task("demos.async_tasks.stream_words", [["a"], host, port, url, h.ns.queue("reuse")]))
        for _ in range(slots + 3)
    ]
    loops = {(r["pid"], r["loop"]) for r in runs}
    ctx.check(
        f"loops made for {len(runs)} tasks on {slots} pool slot(s)",
        f"<= {slots}",
        len(loops),
        passed=1 <= len(loops) <= slots,
    )
