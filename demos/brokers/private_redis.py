"""A private ``redis-server`` on a free port, which a scenario may stop and start (never the shared one)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from celery_sim.core.workers.spawn import popen, wait_ready

__all__ = ["PrivateRedis", "redis_server_path"]


def redis_server_path() -> str | None:
    return shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRedis:
    """``redis-server`` on 127.0.0.1 and a free port, persisting every write (AOF, fsync always),
    so that what was queued before :meth:`kill` is there again after :meth:`start`."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="csim-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 5.0) -> None:
        """Start the server (again) and wait, at most ``timeout`` s, until it answers."""
        path = redis_server_path()
        if path is None:
            raise RuntimeError("redis-server is not installed")
        self._proc = popen(
            [
                path,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_ready(self._proc, self._answers, timeout, poll_s=0.01):
            self.kill()
            raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout:g}s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: the outage (nothing is lost: every write was already on disk)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(5.0)
            self._proc = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)
