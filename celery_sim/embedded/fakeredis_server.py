"""fakeredis served over a private Unix socket, so that kombu and Celery see a real file descriptor.

kombu's Redis transport and Celery's Redis result backend wait on sockets (epoll in the worker's
event loop, select() in the result consumer); fakeredis' in-process connection classes have no
file descriptor, so swapping them in hangs the worker at start. Serving fakeredis' own request
handler over a Unix socket gives both real descriptors, and no TCP: no port to allocate, no
Nagle delay. Each run gets its own socket and its own empty fake server.

fakeredis' own handler looks for replies pushed from other connections' threads (pub/sub
messages: Celery's result backend, remote control) every 10 ms; measured, that put 11 ms on a
round trip (p50; real Redis 2.6 ms). Here a pushed reply wakes the handler through a pipe.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
from itertools import count
from pathlib import Path
from typing import Any, BinaryIO

from fakeredis import FakeServer
from fakeredis._clients._tcp_server import TCPFakeRequestHandler

from celery_sim.core.workers.spawn import popen, wait_ready
from celery_sim.embedded import zygote
from celery_sim.embedded.zygote import Forked, Template, serve_requests
from celery_sim.errors import BrokerError

__all__ = ["FakeRedisServer", "live_servers"]

#: How long a handler waits on its client and its wake-up pipe before it looks at the server's
#: shutdown flag again (a pushed reply or a request ends the wait at once).
_IDLE_S = 0.5

log = logging.getLogger(__name__)

_live: set[str] = set()
_live_lock = threading.Lock()


def live_servers() -> list[str]:
    """Socket paths of the fakeredis servers started here and not yet stopped (empty after every run)."""
    with _live_lock:
        return sorted(_live)


class _Outbox:
    """A connection's replies not yet taken by the socket: writing never waits for the client.

    A handler that waits for its client to read a reply stops reading the client's requests; a
    client that is itself blocked writing a large request (a pipeline, a big message) then never
    reads, and both wait (measured: single ``delay()`` calls stalled 4.4-4.8 s, and 5,000 queued
    tasks never completed). Here a reply goes out as far as the socket takes it and the rest
    waits in this buffer, flushed by the handler's loop whenever the socket is writable.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._pending = bytearray()
        self._lock = threading.Lock()

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def write(self, data: bytes) -> None:
        with self._lock:
            self._pending += data
            self._send()

    def flush(self) -> None:
        with self._lock:
            self._send()

    def _send(self) -> None:
        while self._pending:
            try:
                sent = self._sock.send(self._pending)
            except BlockingIOError:
                return
            del self._pending[:sent]


class _Handler(TCPFakeRequestHandler):
    """fakeredis' request handler, keeping the connection open after a command error.

    fakeredis' own loop closes the connection whenever running a command raises, for instance
    on EVALSHA of a script it has not seen yet; real Redis answers with an error and carries
    on (kombu then sends EVAL). A dropped connection makes the worker reconnect, with warnings.
    """

    def setup(self) -> None:
        # Unix-socket peers have no address; fakeredis keys its clients by address.
        self.client_address = f"unix-client-{next(self.server.client_ids)}"
        super().setup()
        # fakeredis makes the socket non-blocking and writes replies through a buffered file:
        # when the client's buffer is full, a large reply is cut short (BlockingIOError) and the
        # client waits forever for the rest. Replies go through an outbox instead (see _Outbox).
        self.outbox = _Outbox(self.connection)
        self.writer.write = self.outbox.write  # type: ignore[method-assign,assignment]
        # A reply fakeredis pushes from another connection's thread (a pub/sub message) writes a
        # byte here, which wakes this handler's select().
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        sock = self.current_client.get_socket()
        push = sock.put_response

        def put_response(msg: Any) -> None:
            push(msg)
            with contextlib.suppress(OSError):  # the pipe is full (a wake-up is pending) or closed
                os.write(self._wake_w, b"!")

        sock.put_response = put_response  # type: ignore[method-assign]

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def handle(self) -> None:
        client = self.current_client
        while not self.server._shutdown_event.is_set():
            try:
                if client.can_read():
                    try:
                        response = client.read_response()
                    except Exception as exc:  # fakeredis raises error replies; Redis sends them
                        response = exc
                    self.writer.dump(response)
                    continue
                data = self.rfile.readline()
                if data == b"":
                    waiting_out = [self.connection] if self.outbox.pending else []
                    readable, writable, _ = select.select([self.connection, self._wake_r], waiting_out, [], _IDLE_S)
                    if writable:
                        self.outbox.flush()
                    if self._wake_r in readable:
                        with contextlib.suppress(OSError):
                            os.read(self._wake_r, 4096)
                    if self.connection not in readable:
                        continue
                    data = self.rfile.readline()
                    if data == b"":
                        return  # the peer closed the connection
            except (OSError, ValueError) as exc:  # socket I/O failed: the peer is gone
                log.debug("fakeredis client %s gone: %r", self.client_address, exc)
                return
            try:
                client.get_socket().sendall(data)
            except Exception as exc:  # a command failed: answer with the error, as Redis does
                log.debug("fakeredis command from %s failed: %r", self.client_address, exc)
                try:
                    self.writer.dump(exc)
                except (OSError, ValueError):
                    return


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, path: str) -> None:
        self._shutdown_event = threading.Event()
        super().__init__(path, _Handler)
        self.fake_server = FakeServer(server_type="redis", version=(7, 0))
        self.client_ids = count()
        self.clients: dict[Any, Any] = {}


class _Executed:
    """A server in an interpreter of its own (where servers cannot be forked from the template)."""

    def __init__(self, path: str, timeout: float) -> None:
        self._proc = popen(
            [sys.executable, "-m", __name__, path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.pid = self._proc.pid
        if wait_ready(self._proc, lambda: _accepts(path), timeout):
            return
        exited = self._proc.poll() is not None
        error = self._proc.stderr.read().decode(errors="replace")[-2000:] if exited and self._proc.stderr else ""
        self.kill(5.0)
        if exited:
            raise BrokerError(
                f"the embedded fakeredis server exited at start (status {self._proc.returncode}):\n{error}"
            )
        raise BrokerError(f"the embedded fakeredis server did not accept connections within {timeout:g}s")

    def kill(self, timeout: float) -> bool:
        self._proc.kill()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        finally:
            if self._proc.stderr is not None:
                self._proc.stderr.close()
        return True


def _accepts(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
        return True


class FakeRedisServer:
    """One fakeredis server in its own process, on a Unix socket in a private temporary directory.

    Its own process, not a thread of this one: worker processes (prefork) can reach it, and the
    server does not compete for this process's GIL with the embedded worker's threads. On Linux
    the process is forked from a template that has fakeredis imported already (see
    :mod:`celery_sim.embedded.zygote`): 0.17 s of import saved on every start but the first.
    """

    def __init__(self, directory: Path, process: Forked | _Executed) -> None:
        self._directory = directory
        self._process = process
        self.path = str(directory / "redis.sock")

    @classmethod
    def start(cls, run_id: str, timeout: float = 10.0) -> FakeRedisServer:
        """Start the server and wait (at most ``timeout`` s) until it accepts connections."""
        directory = Path(tempfile.mkdtemp(prefix=f"csim-{run_id}-"))
        path = str(directory / "redis.sock")
        try:
            if zygote.available():
                template = Template.shared(timeout, _serve, [sys.executable, "-m", __name__, "--template"])
                process: Forked | _Executed = template.fork(path, timeout)
            else:
                process = _Executed(path, timeout)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        instance = cls(directory, process)
        with _live_lock:
            _live.add(instance.path)
        return instance

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def url(self) -> str:
        return f"redis+socket://{self.path}"

    @property
    def backend_url(self) -> str:
        return f"redis+socket://{self.path}"

    def stop(self) -> None:
        """Stop the server process and remove its socket directory. Killed: all it holds is the
        run's data, which goes with it (SIGTERM made it close its handlers first: 0.12 s)."""
        if not self._process.kill(5.0):
            log.warning("the fakeredis server %s (pid %s) did not exit within 5 s of SIGKILL", self.path, self.pid)
        shutil.rmtree(self._directory, ignore_errors=True)
        with _live_lock:
            _live.discard(self.path)


def run(server: _Server) -> None:
    """Serve ``server`` until SIGTERM."""

    def _terminate(signum: int, frame: Any) -> None:
        server._shutdown_event.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()


def _serve(requests: BinaryIO, replies: BinaryIO) -> None:  # pragma: no cover - the template
    """The template's loop (see :func:`~celery_sim.embedded.zygote.serve_requests`)."""
    serve_requests(_Server, run, requests, replies)


if __name__ == "__main__":
    if sys.argv[1:] == ["--template"]:
        _serve(sys.stdin.buffer, sys.stdout.buffer)
    else:
        run(_Server(sys.argv[1]))
