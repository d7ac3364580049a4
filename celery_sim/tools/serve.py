"""``serve``: a demo system's HTTP API with the embedded (or a real) broker and worker beside it.

One system so far, ``ai_runner`` (:mod:`demos.ai_runner`): FastAPI served by uvicorn in this
process, the run's worker in threads of it, the rows in SQLite or PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

from celery_sim.errors import UsageError

__all__ = ["SYSTEMS", "check_address", "check_database", "serve"]

#: system -> the Celery app its worker runs.
SYSTEMS = {"ai_runner": "demos.ai_runner.celery_app:app"}


def check_address(host: str, port: int) -> None:
    """A UsageError if ``host:port`` cannot be listened on (in use, or not this machine's)."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is not a port: give 1..65535, or 0 for any free one")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port or --host"
            ) from exc


def check_database(url: str) -> None:
    """A UsageError naming the (masked) URL if the database cannot be reached or its table made."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from demos.ai_runner.db import dispose, init_db

    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError as exc:
        raise UsageError(
            f"--database-url {url!r} is not a database URL ({exc}); e.g. sqlite:///ai_runner.db or "
            "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ) from exc
    try:
        init_db(url)
    except (SQLAlchemyError, ImportError) as exc:
        dispose(url)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--database-url {shown}: cannot use it ({first}); is the database running?") from exc


def serve(
    system: str,
    *,
    host: str,
    port: int,
    broker: str,
    result_backend: str | None,
    database_url: str,
    duration: float | None,
    on_ready: Callable[[str, Any], None],
) -> None:
    """Serve ``system`` until Ctrl-C or SIGTERM (or ``duration`` seconds); ``on_ready(url, harness)`` once it answers."""
    from celery_sim.core.harness import Harness
    from demos.ai_runner.api import create_app
    from demos.ai_runner.server import ApiServer

    os.environ["AI_RUNNER_DATABASE_URL"] = database_url  # the worker's tasks read it
    with (
        Harness(app=SYSTEMS[system], broker=broker, result_backend=result_backend) as harness,
        ApiServer(create_app(database_url), host=host, port=port) as server,
    ):
        on_ready(server.url, harness)
        stop = threading.Event()
        # Ctrl-C and `kill` both stop it cleanly; SIGINT explicitly, as a shell script starts
        # background commands with SIGINT ignored.
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            stop.wait(duration)  # a signal handler runs in this (main) thread while it waits
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
