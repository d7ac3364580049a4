"""The embedded fakeredis server answers like a Redis server: writing a reply never stops it reading."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from celery_sim.embedded import zygote
from celery_sim.embedded.fakeredis_server import FakeRedisServer, _serve


@pytest.fixture
def server() -> Iterator[FakeRedisServer]:
    running = FakeRedisServer.start("csim-test")
    try:
        yield running
    finally:
        running.stop()


def test_a_client_writing_a_large_pipeline_before_reading_gets_every_reply(server: FakeRedisServer) -> None:
    # Each GET's reply (1 MiB) fills the socket while the client is still writing its next SET
    # (1 MiB): a server that waits for the client to read its reply stops reading, and both wait
    # (the old server gave up after 5 s and dropped the connection).
    value = b"x" * (1 << 20)
    rounds = 12
    client = redis.Redis(unix_socket_path=server.path, socket_timeout=30.0)
    try:
        client.set("big", value)
        pipe = client.pipeline(transaction=False)
        for i in range(rounds):
            pipe.get("big")
            pipe.set(f"k{i}", value)
        replies = pipe.execute()
    finally:
        client.close()
    assert replies == [value, True] * rounds


needs_template = pytest.mark.skipif(not zygote.available(), reason="servers are forked from a template on Linux only")


@needs_template
def test_servers_forked_from_one_template_are_separate_and_gone_once_stopped() -> None:
    first, second = FakeRedisServer.start("csim-test-a"), FakeRedisServer.start("csim-test-b")
    try:
        assert first.pid != second.pid
        assert os.getpid() not in (_parent(first.pid), _parent(second.pid))  # the template's children
        assert _parent(first.pid) == _parent(second.pid)
        one, other = (redis.Redis(unix_socket_path=s.path, socket_timeout=5.0) for s in (first, second))
        one.set("k", "first")
        assert (one.get("k"), other.get("k")) == (b"first", None)
        one.close()
        other.close()
    finally:
        first.stop()
        second.stop()
    assert not Path(f"/proc/{first.pid}").exists()
    assert not Path(f"/proc/{second.pid}").exists()
    assert not Path(first.path).parent.exists()


@needs_template
def test_a_template_that_ends_takes_its_servers_with_it(tmp_path: Path) -> None:
    # A private one (the shared template stays up), an interpreter of its own: this process has threads.
    template = zygote.Template._start(
        10.0, _serve, [sys.executable, "-m", "celery_sim.embedded.fakeredis_server", "--template"], fork=False
    )
    forked = template.fork(str(tmp_path / "redis.sock"), 10.0)
    client = redis.Redis(unix_socket_path=str(tmp_path / "redis.sock"), socket_timeout=5.0)
    assert client.ping() is True
    client.close()
    template.close()
    assert not forked.alive
    assert forked.kill(1.0) is True  # already gone


_FORKED = """
import os, sys, threading
from pathlib import Path
import redis
from celery_sim.embedded.fakeredis_server import FakeRedisServer
from celery_sim.embedded.zygote import Template

held = threading.Event()
if sys.argv[1] == "threads":
    threading.Thread(target=held.wait, daemon=True).start()
read_end, write_end = os.pipe()  # open before the template starts
server = FakeRedisServer.start("csim-test-fork")
template = Template._shared
client = redis.Redis(unix_socket_path=server.path, socket_timeout=5.0)
client.set("k", "v")
print(template.forked, client.get("k"), sep="\\n")
client.close()
os.close(write_end)
print(os.read(read_end, 1) == b"")  # EOF: the template kept no copy of this process's descriptors
held.set()
pid = template._proc.pid
print(sorted(os.listdir(f"/proc/{pid}/fd")))
server.stop()
Template.shutdown()
print(Path(f"/proc/{pid}").exists(), Path(f"/proc/{server.pid}").exists())
"""


@needs_template
@pytest.mark.parametrize("threads", ["one", "threads"])
def test_a_single_threaded_process_forks_its_template_which_keeps_none_of_its_descriptors(threads: str) -> None:
    """One thread: the template is forked from the process (fakeredis imported already); more: spawned."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_FORKED), threads], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    forked, value, eof, fds, still = done.stdout.splitlines()
    assert (forked, value, eof) == (str(threads == "one"), "b'v'", "True")
    # stdin and stdout are its pipes, stderr a file; then one pidfd per live server.
    assert fds == "['0', '1', '2', '3']", fds
    assert still == "False False"  # the template and its server are gone once stopped


_CLOSED = """
import os, sys
for fd in (0, 1, 2):
    os.close(fd)  # a process started without them: the error file and the pipes take their numbers
out = os.fdopen(int(sys.argv[1]), "w")
from celery_sim.embedded.fakeredis_server import FakeRedisServer
from celery_sim.embedded.zygote import Template

server = FakeRedisServer.start("csim-test-closed")
pid = Template._shared._proc.pid
print(Template._shared.forked, *(os.readlink(f"/proc/{pid}/fd/{fd}") for fd in (0, 1, 2)), sep="|", file=out, flush=True)
server.stop()
"""


@needs_template
def test_a_forked_template_has_its_pipes_and_error_file_in_place_when_the_process_had_no_stdio() -> None:
    read_end, write_end = os.pipe()
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CLOSED), str(write_end)],
        pass_fds=(write_end,),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        forked, stdin, stdout, stderr = reader.read().strip().split("|")
    assert done.returncode == 0, done.stderr
    assert forked == "True"
    assert stdin.startswith("pipe:") and stdout.startswith("pipe:") and stdin != stdout
    assert not stderr.startswith("pipe:"), stderr  # the error file, not one of the pipes


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


_KILLED = """
import sys
from celery_sim.embedded.fakeredis_server import FakeRedisServer
from celery_sim.embedded.zygote import Template

server = FakeRedisServer.start("csim-test-killed")
import time

def name(pid):
    return open(f"/proc/{pid}/comm").read().strip()

until = time.monotonic() + 5.0  # the server names itself once forked, a moment after its pid is known
while name(server.pid) == name(Template._shared._proc.pid) and time.monotonic() < until:
    time.sleep(0.005)
names = [name(pid) for pid in (Template._shared._proc.pid, server.pid)]
print(Template._shared.forked, Template._shared._proc.pid, server.pid, *names, flush=True)
sys.stdin.read()  # until killed
"""


@needs_template
def test_a_forked_template_and_its_servers_die_with_the_process_killed_by_sigkill() -> None:
    import select
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_KILLED)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the process did not start its server within 30 s"
        forked, template, server, *names = proc.stdout.readline().split()
        assert forked == "True"
        assert names == [zygote.TEMPLATE_NAME, zygote.SERVER_NAME]  # how ps and the reaping tests know them
        watched = [os.pidfd_open(int(template)), os.pidfd_open(int(server))]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        pending = list(watched)
        for _ in range(2):
            pending = [fd for fd in pending if fd not in select.select(pending, [], [], 5.0)[0]]
            if not pending:
                break
        assert not pending, "the template or its server outlived the process killed by SIGKILL"
        for fd in watched:
            os.close(fd)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
