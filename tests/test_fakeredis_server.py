"""The embedded fakeredis server answers like a Redis server: writing a reply never stops it reading."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

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
