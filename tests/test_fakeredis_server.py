"""The embedded fakeredis server answers like a Redis server: writing a reply never stops it reading."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from celery_sim.embedded import zygote
from celery_sim.embedded.fakeredis_server import FakeRedisServer


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
    template = zygote.Template._start(10.0)  # a private one: the shared template stays up
    forked = template.fork(str(tmp_path / "redis.sock"), 10.0)
    client = redis.Redis(unix_socket_path=str(tmp_path / "redis.sock"), socket_timeout=5.0)
    assert client.ping() is True
    client.close()
    template.close()
    assert not forked.alive
    assert forked.kill(1.0) is True  # already gone


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
