"""A real ``celery worker`` process (prefork pool), started and always reaped by the harness."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from celery import Celery
from celery.app.control import Control

from celery_sim.core.appfactory import ENV_SPEC, AppSpec
from celery_sim.core.brokers import mask_url
from celery_sim.core.namespace import Namespace
from celery_sim.core.workers.probe import answers, ask, probe_control
from celery_sim.core.workers.spawn import popen, wait_ready
from celery_sim.errors import WorkerError

__all__ = ["ProcessWorker", "external_worker_command", "live_processes"]

log = logging.getLogger(__name__)

#: How long a stopping worker may take to say it is idle (else: the warm stop of a busy one).
IDLE_REPLY_TIMEOUT_S = 0.5

_live: weakref.WeakSet[ProcessWorker] = weakref.WeakSet()


def external_worker_command(
    broker_url: str,
    ns: Namespace,
    queues: Sequence[str],
    result_backend: str | None = None,
    *,
    app_path: str | None = None,
    configure_path: str | None = None,
) -> str:
    """The shell command that starts a worker for run ``ns`` anywhere (``--worker external``):
    the app ``app_path`` (``module:attr``), or a fresh one set up by ``configure_path``.

    Passwords are masked: put yours back in before running it.
    """
    env = [f"CSIM_BROKER_URL='{mask_url(broker_url)}'", f"CSIM_RUN_ID={ns.run_id}"]
    if app_path:
        env.append(f"CSIM_APP={app_path}")
    elif configure_path:
        env.append(f"CSIM_CONFIGURE={configure_path}")
    if result_backend:
        env.append(f"CSIM_RESULT_BACKEND='{mask_url(result_backend)}'")
    return (
        f"{' '.join(env)} celery -A celery_sim.core.workers.bootstrap worker -E "
        f"-Q {','.join(ns.queue(q) for q in queues)} -n worker1@%h"
    )


def live_processes() -> list[int]:
    """Process ids of worker processes started here and not yet reaped (empty after every run)."""
    return sorted(w.pid for w in list(_live) if w.pid is not None and w.alive)


class ProcessWorker:
    """``celery -A celery_sim.core.workers.bootstrap worker -P prefork`` for one run, with a bounded start and stop.

    The process leads its own process group, so a stop can kill the pool's children with it;
    it is ready once it answers Celery's remote-control ``ping``.
    """

    kind = "process"

    def __init__(
        self,
        app: Celery,
        spec: AppSpec,
        *,
        hostname: str,
        queues: Sequence[str],
        concurrency: int = 2,
        loglevel: str = "WARNING",
        pool: str = "prefork",
        private_broker: bool = False,
    ) -> None:
        if concurrency < 1:
            raise WorkerError(f"concurrency={concurrency!r} must be at least 1")
        self.app = app
        self.spec = spec
        self.hostname = hostname
        self.queues = tuple(queues)
        self.concurrency = concurrency
        self.pool = pool
        self._loglevel = loglevel
        #: Its broker is the run's own and goes with it (embedded fakeredis): see :meth:`request_stop`.
        self.private_broker = private_broker
        self._stop_requested = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._probe: Control | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def running(self) -> bool:
        return self.alive

    @property
    def returncode(self) -> int | None:
        """How the process ended (``-9``: killed, see :meth:`request_stop`); None while it runs."""
        return self._proc.returncode if self._proc is not None else None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celery_sim.core.workers.bootstrap",
            "worker",
            "-P",
            self.pool,
            "-c",
            str(self.concurrency),
            "-Q",
            ",".join(self.queues),
            "-n",
            self.hostname,
            "-E",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            "-l",
            self._loglevel,
        ]

    def log_tail(self, lines: int = 15) -> str:
        if self._log is None:
            return ""
        text = Path(self._log.name).read_text(errors="replace").splitlines()[-lines:]
        return mask_url("\n".join(text))

    def start(self, timeout: float) -> None:
        """Start the process and wait until it answers ``ping``; :class:`WorkerError` after ``timeout``."""
        if self._proc is not None:
            raise WorkerError(f"worker {self.hostname} was already started")
        env = {**os.environ, ENV_SPEC: self.spec.to_json()}
        self._log = tempfile.NamedTemporaryFile(prefix="csim-worker-", suffix=".log", delete=False)  # noqa: SIM115
        self._proc = popen(
            self.command(), env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        _live.add(self)
        if wait_ready(self._proc, self._answers_ping, timeout, poll_s=0):  # the ping itself waits 0.2 s
            return
        if not self.alive:
            raise WorkerError(f"worker process {self.hostname} exited at start:\n{self.log_tail()}")
        self.stop(2.0)
        raise WorkerError(f"worker process {self.hostname} did not answer ping within {timeout:g}s:\n{self.log_tail()}")

    def _answers_ping(self) -> bool:
        if self._probe is None:
            self._probe = probe_control(self.app)
        return answers(self._probe, self.hostname, 0.2)

    def request_stop(self) -> None:
        """Warm shutdown (SIGTERM, as ``celery worker`` expects): running tasks finish first.

        Only a worker that says it has no task active or reserved is stopped faster: on a private
        broker it is killed (its warm shutdown would change nothing there, and billiard's pool join
        alone takes 0.5-1.5 s of it), elsewhere its pool processes get SIGTERM with it (they exit
        at once; the main process alone took 1.8-4.4 s to end them). A busy worker's main process
        alone gets SIGTERM: a pool process given SIGTERM exits, failing the task it runs.
        """
        if self._stop_requested or not self.alive or self._proc is None:
            return
        self._stop_requested = True
        idle = self._idle()
        with contextlib.suppress(ProcessLookupError):
            if idle and self.private_broker:
                os.killpg(self._proc.pid, signal.SIGKILL)
            elif idle:
                os.killpg(self._proc.pid, signal.SIGTERM)
            else:
                os.kill(self._proc.pid, signal.SIGTERM)

    def _idle(self) -> bool:
        """Whether the worker answers that it has no task active or reserved (False if it does not answer)."""
        control = probe_control(self.app)  # not the start's: a ping that timed out there takes the next reply
        for command in ("active", "reserved"):
            replies = ask(control, command, timeout=IDLE_REPLY_TIMEOUT_S, limit=1, destination=[self.hostname])
            if replies.get(self.hostname) != []:
                log.debug("worker %s at stop, %s: %r", self.hostname, command, replies)
                return False
        return True

    def stop(self, timeout: float) -> None:
        """Stop and reap the process and its pool; SIGKILL to the whole group after ``timeout``."""
        proc = self._proc
        if proc is None:
            return
        self.request_stop()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("worker process %s did not stop within %gs; killing it", self.hostname, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # pool children left behind, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5.0)
        _live.discard(self)
        if self._log is not None:
            self._log.close()
            with contextlib.suppress(OSError):
                os.unlink(self._log.name)
            self._log = None

    def pool_pids(self) -> list[int]:
        """Process ids of the pool's child processes (from Celery's ``inspect stats``)."""
        stats: Any = self.app.control.inspect(destination=[self.hostname], timeout=1.0).stats() or {}
        return sorted(int(p) for p in stats.get(self.hostname, {}).get("pool", {}).get("processes", []))
