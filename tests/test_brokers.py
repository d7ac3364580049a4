from __future__ import annotations

import pytest

from celery_sim.core.brokers import FakeRedisBroker, MemoryBroker, UrlBroker, mask_url, resolve_broker
from celery_sim.errors import BrokerError


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("amqp://guest:guest@localhost:5672//", "amqp://guest:***@localhost:5672//"),
        ("redis://:secret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("failed: amqp://u:p@a// and redis://:q@b/1", "failed: amqp://u:***@a// and redis://:***@b/1"),
    ],
)
def test_passwords_are_masked_wherever_a_url_appears(text: str, masked: str) -> None:
    assert mask_url(text) == masked


def test_names_resolve_to_embedded_brokers() -> None:
    assert isinstance(resolve_broker("memory"), MemoryBroker)
    assert isinstance(resolve_broker("fakeredis"), FakeRedisBroker)


def test_urls_resolve_to_real_brokers_with_redis_results_by_default() -> None:
    redis = resolve_broker("redis://localhost:6379/3")
    assert isinstance(redis, UrlBroker) and redis.result_backend == "redis://localhost:6379/3"
    amqp = resolve_broker("amqp://guest:guest@localhost:5672//")
    assert isinstance(amqp, UrlBroker) and amqp.result_backend.startswith("redis://")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("rabbit", "unknown broker 'rabbit'. Choose one of: memory, fakeredis"),
        ("fakeredi", "Did you mean 'fakeredis'?"),
        ("kafka://localhost:9092", "has scheme 'kafka'; supported schemes: redis, rediss, amqp, amqps, pyamqp"),
        ("redis://:pw@localhost:xx/0", "broker URL 'redis://:***@localhost:xx/0' has a malformed port"),
        ("amqp:///", "names no host"),
    ],
)
def test_bad_broker_values_are_explained(value: str, message: str) -> None:
    with pytest.raises(BrokerError, match=None) as info:
        resolve_broker(value)
    assert message in str(info.value)


def test_preflight_of_an_unreachable_broker_fails_quickly_and_masks_the_password() -> None:
    with pytest.raises(BrokerError) as info:
        resolve_broker("redis://:hunter2@127.0.0.1:1/0").preflight(timeout=2)
    assert "cannot reach the broker at redis://:***@127.0.0.1:1/0" in str(info.value)
    assert "hunter2" not in str(info.value)
