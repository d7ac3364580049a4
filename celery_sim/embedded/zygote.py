"""One pre-started process that forks a fakeredis server per run: a start skips importing fakeredis.

A fresh interpreter spends 0.12-0.19 s importing fakeredis (redis-py alone ~0.1 s, measured)
before it serves; a run of the catalog on fakeredis starts 14 servers, several at once in its
lanes. This template imports fakeredis once and forks one server per request, its listening
socket bound before the fork, so the server accepts connections when its pid comes back. The
template is single-threaded: forking it is safe, unlike forking this process, whose worker
threads may hold locks the child would inherit held.

Where the template comes from. While this process has a single thread (the kernel's count, C
threads included), nothing can hold a lock a child would inherit held, so the template is forked
from this process itself, which has fakeredis imported already: it is ready in a few ms instead
of the 0.2-0.3 s of a fresh interpreter (the first server of a process, measured). The forked
template keeps only its pipes (every other descriptor is closed), resets every signal handler,
and freezes the objects it inherited (:func:`gc.freeze`), so that none is finalized there; it
never returns into this process's code and ends with ``os._exit``. With more than one thread it
is a fresh interpreter, started through :func:`~celery_sim.core.workers.spawn.popen`.

Lifecycle. The template starts on the first request, asks to be terminated if this process dies,
and ends when this process exits (its stdin closes) or dies; either way it kills the servers it
forked first and waits (at most 2 s) for their exit. Each server also asks for SIGKILL if the template dies.
Servers are stopped one by one by their :class:`Forked` handle: SIGKILL through a pidfd (never a
pid another process may have reused by then), then their exit is awaited.

Linux only (``os.pidfd_open``, Linux 5.3); elsewhere each server is its own interpreter.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import fcntl
import gc
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from time import monotonic
from typing import IO, Any, BinaryIO

from celery_sim.core.workers.spawn import die_with_parent, name_process, popen
from celery_sim.errors import BrokerError

__all__ = ["Forked", "Template", "available", "serve_requests"]

#: The process names (``/proc/PID/comm``) of the template and of the servers it forks.
TEMPLATE_NAME, SERVER_NAME = "csim-fr-tmpl", "csim-fakeredis"

#: What the template runs: serve the requests read from the first stream, replying on the second.
Serve = Callable[[BinaryIO, BinaryIO], None]


def available() -> bool:
    """Whether servers can be forked from a template here (Linux with pidfds)."""
    return sys.platform.startswith("linux") and hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")


class Forked:
    """A server process forked by the template: not this process's child, so it is watched through a pidfd."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._fd: int | None = os.pidfd_open(pid)

    @property
    def alive(self) -> bool:
        return self._fd is not None and not select.select([self._fd], [], [], 0)[0]

    def kill(self, timeout: float) -> bool:
        """SIGKILL the server and wait (at most ``timeout`` s) for it to exit; whether it did."""
        if self._fd is None:
            return True
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self._fd, signal.SIGKILL)
        gone = bool(select.select([self._fd], [], [], timeout)[0])
        os.close(self._fd)
        self._fd = None
        return gone


def _single_threaded() -> bool:
    """Whether this process has one thread, as the kernel counts them (C threads too)."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


class _Child:
    """A template forked from this process: the parts of :class:`subprocess.Popen` a Template uses."""

    def __init__(self, pid: int, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self.pid, self.stdin, self.stdout = pid, stdin, stdout
        self.returncode: int | None = None
        self._fd = os.pidfd_open(pid)

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                done, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else (a waitpid(-1) elsewhere): exited
                done, status = self.pid, 0
            if done:
                self.returncode = os.waitstatus_to_exitcode(status)
                os.close(self._fd)
        return self.returncode

    def wait(self, timeout: float) -> int:
        deadline = monotonic() + timeout
        while (code := self.poll()) is None:
            remaining = deadline - monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(f"fakeredis template {self.pid}", timeout)
            select.select([self._fd], [], [], remaining)
        return code

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._fd, signal.SIGKILL)


class Template:
    """The parent's side: the template process, started once and shared by every run in this process."""

    _shared: Template | None = None
    _shared_lock = threading.Lock()

    def __init__(self, proc: subprocess.Popen[bytes] | _Child, errors: IO[bytes]) -> None:
        self._proc = proc
        self._errors = errors
        self._buffer = b""
        self._lock = threading.Lock()  # one request and its reply at a time

    @property
    def forked(self) -> bool:
        """Whether the template was forked from this process (else it is an interpreter of its own)."""
        return isinstance(self._proc, _Child)

    @classmethod
    def shared(cls, timeout: float, serve: Serve, command: list[str]) -> Template:
        """The running template, started (and waited for, at most ``timeout`` s) if there is none:
        forked from this process to run ``serve`` if it has one thread, else ``command``."""
        with cls._shared_lock:
            if cls._shared is None or cls._shared._proc.poll() is not None:
                if cls._shared is not None:
                    cls._shared.close()
                cls._shared = cls._start(timeout, serve, command)
            return cls._shared

    @classmethod
    def _start(cls, timeout: float, serve: Serve, command: list[str], fork: bool | None = None) -> Template:
        """A new template; ``fork`` None forks it when this process has one thread."""
        errors = tempfile.TemporaryFile()  # noqa: SIM115 - the template's stderr, kept for its whole life
        try:
            if fork if fork is not None else _single_threaded():
                proc: subprocess.Popen[bytes] | _Child = _fork_template(serve, errors)
            else:
                proc = popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors)
        except BaseException:
            errors.close()
            raise
        template = cls(proc, errors)
        if template._read_line(timeout) != "ready":
            template.close()
            raise BrokerError(f"the fakeredis server template did not start within {timeout:g}s:\n{template.errors()}")
        return template

    def fork(self, path: str, timeout: float) -> Forked:
        """A new server listening on the Unix socket ``path`` (accepting connections on return)."""
        with self._lock:
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write(path.encode() + b"\n")
                self._proc.stdin.flush()
            except OSError as exc:
                raise BrokerError(f"the fakeredis server template is gone ({exc}):\n{self.errors()}") from exc
            reply = self._read_line(timeout)
        if not reply.isdigit():
            raise BrokerError(
                f"the fakeredis server template could not start a server on {path}: {reply or 'no reply'}"
            )
        return Forked(int(reply))

    def _read_line(self, timeout: float) -> str:
        """The template's next line, or "" at its exit or after ``timeout`` s."""
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return ""
            chunk = os.read(fd, 4096)
            if not chunk:
                return ""
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode(errors="replace").strip()

    def errors(self) -> str:
        self._errors.seek(0)
        return self._errors.read().decode(errors="replace")[-2000:]

    def close(self, timeout: float = 5.0) -> None:
        """End the template: it kills the servers it forked, then exits."""
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._errors.close()

    @classmethod
    def shutdown(cls) -> None:
        """Close the shared template (at this process's exit)."""
        with cls._shared_lock:
            if cls._shared is not None:
                cls._shared.close()
                cls._shared = None


atexit.register(Template.shutdown)


def _fork_template(serve: Serve, errors: IO[bytes]) -> _Child:
    """Fork this (single-threaded) process into a template running ``serve`` on two pipes."""
    requests_r, requests_w = os.pipe()
    replies_r, replies_w = os.pipe()
    parent = os.getpid()
    collecting = gc.isenabled()
    gc.disable()  # no collection in the child before it freezes what it inherited
    try:
        pid = os.fork()
        if pid == 0:
            _become_template(parent, serve, requests_r, replies_w, errors.fileno())
    finally:
        if collecting:
            gc.enable()
    os.close(requests_r)
    os.close(replies_w)
    return _Child(pid, os.fdopen(requests_w, "wb"), os.fdopen(replies_r, "rb"))


def _become_template(parent: int, serve: Serve, requests: int, replies: int, errors: int) -> None:  # pragma: no cover
    """In the forked child: keep only the pipes and the error file, as fds 0, 1 and 2, reset every
    signal handler, leave what this process held alone, and serve; never return."""
    try:
        gc.freeze()  # the parent's objects (sockets among them) are never collected nor finalized here
        gc.enable()
        die_with_parent(signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the request above took effect
            os._exit(1)
        os.setsid()  # as popen's children: Ctrl-C in a terminal reaches the run only
        # Each above 2 first: in a process started with 0-2 closed, the error file or a pipe is one
        # of them, and putting one in place would overwrite another before it was moved.
        moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 3) for fd in (requests, replies, errors)]
        for target, fd in enumerate(moved):
            os.dup2(fd, target)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        signal.set_wakeup_fd(-1)
        faulthandler.disable()  # its file descriptor was closed above
        for signum in signal.valid_signals():
            if signum not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGPIPE):
                with contextlib.suppress(OSError, ValueError):
                    signal.signal(signum, signal.SIG_DFL)
        serve(os.fdopen(0, "rb"), os.fdopen(1, "wb"))
    finally:
        os._exit(1)


def serve_requests(
    bind: Callable[[str], Any], run: Callable[[Any], None], requests: BinaryIO, replies: BinaryIO
) -> None:  # pragma: no cover - the template
    """The template's loop: for each socket path read from ``requests``, ``bind(path)`` a server,
    fork a process that will ``run(server)``, and answer on ``replies`` with its pid. Ends at EOF
    or SIGTERM, killing the servers it forked."""
    servers: dict[int, int] = {}  # pid -> pidfd

    def end(*_: Any) -> None:
        for fd in servers.values():
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        deadline = monotonic() + 2.0
        waiting = list(servers.values())
        while waiting and (remaining := deadline - monotonic()) > 0:  # their exit, so that ours means it
            done = select.select(waiting, [], [], remaining)[0]
            waiting = [fd for fd in waiting if fd not in done]
        os._exit(0)

    name_process(TEMPLATE_NAME)
    signal.signal(signal.SIGTERM, end)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the run, which then closes stdin
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # servers are reaped as they exit
    template = os.getpid()
    out = replies
    out.write(b"ready\n")
    out.flush()
    for line in requests:
        path = line.decode().strip()
        for pid, fd in list(servers.items()):  # forget the servers that have exited
            if select.select([fd], [], [], 0)[0]:
                os.close(fd)
                del servers[pid]
        try:
            server = bind(path)
        except OSError as exc:
            out.write(f"cannot listen on {path}: {exc}\n".encode())
            out.flush()
            continue
        pid = os.fork()
        if pid == 0:
            _become_server(template, server, run, list(servers.values()))
        server.socket.close()
        servers[pid] = os.pidfd_open(pid)
        out.write(f"{pid}\n".encode())
        out.flush()
    end()


def _become_server(
    template: int, server: Any, run: Callable[[Any], None], inherited: list[int]
) -> None:  # pragma: no cover
    """In the forked child: die with the template, let go of its pipes, and serve until killed."""
    try:
        name_process(SERVER_NAME)
        die_with_parent(signal.SIGKILL)
        if os.getppid() != template:  # the template died before the request above took effect
            os._exit(1)
        for fd in inherited:
            os.close(fd)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.close(devnull)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        run(server)
    finally:
        os._exit(0)
