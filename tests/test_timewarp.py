"""The time compression of published messages (celery_sim.core.timewarp), and its limits."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from celery_sim.core import timewarp
from celery_sim.core.brokers import backend_kind
from celery_sim.core.harness import Harness

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)


def headers(eta_s: float | None = None, expires_s: float | None = None) -> dict[str, Any]:
    return {
        "eta": None if eta_s is None else (NOW + timedelta(seconds=eta_s)).isoformat(),
        "expires": None if expires_s is None else (NOW + timedelta(seconds=expires_s)).isoformat(),
    }


def test_scale_one_leaves_the_message_alone() -> None:
    message, custom = headers(30, 60), {}
    warp = timewarp.apply(message, custom, 1.0, now=NOW)
    assert message == headers(30, 60)
    assert custom == {}
    assert warp.countdown == 30


def test_eta_and_expires_shrink_and_the_originals_are_kept() -> None:
    message, custom = headers(30, 60), {}
    warp = timewarp.apply(message, custom, 0.001, now=NOW)
    assert timewarp.parse_time(message["eta"]) == NOW + timedelta(seconds=0.03)
    assert timewarp.parse_time(message["expires"]) == NOW + timedelta(seconds=0.06)
    assert warp.eta == NOW + timedelta(seconds=30)
    assert warp.countdown == 30
    assert custom[timewarp.HEADER] == 0.001  # retries of this message inherit the scale


def test_the_scale_in_the_headers_wins_over_the_default() -> None:
    message = headers(10)
    timewarp.apply(message, {timewarp.HEADER: 0.01}, 1.0, now=NOW)
    assert timewarp.parse_time(message["eta"]) == NOW + timedelta(seconds=0.1)


def test_an_inherited_expiry_is_not_compressed_twice() -> None:
    first, custom = headers(None, 60), {}
    timewarp.apply(first, custom, 0.001, now=NOW)
    retry = {"eta": None, "expires": first["expires"]}  # Celery copies the request's expires into the retry
    timewarp.apply(retry, dict(custom), 1.0, now=NOW + timedelta(seconds=0.01))
    assert retry["expires"] == first["expires"]


def test_a_delay_never_shrinks_below_the_floor_unless_it_was_shorter() -> None:
    assert timewarp.compress_delay(1, 0.0001) == timewarp.MIN_DELAY_S
    assert timewarp.compress_delay(0.002, 0.0001) == 0.002
    assert timewarp.compress_delay(0, 0.0001) == 0
    assert timewarp.compress_delay(-5, 0.5) == -5  # already due: left as it is


def test_a_database_result_backend_raises_the_floor() -> None:
    assert backend_kind("db+sqlite:///r.sqlite") == "db"
    assert timewarp.min_delay("db") == timewarp.DB_MIN_DELAY_S > timewarp.MIN_DELAY_S
    assert backend_kind("redis://localhost/0") is backend_kind(None) is None
    assert timewarp.min_delay(None) == timewarp.min_delay(backend_kind("rpc://")) == timewarp.MIN_DELAY_S
    message, custom = headers(30, None), {}
    timewarp.apply(message, custom, 0.0001, now=NOW, floor=timewarp.DB_MIN_DELAY_S)
    assert timewarp.parse_time(message["eta"]) == NOW + timedelta(seconds=timewarp.DB_MIN_DELAY_S)


@given(st.floats(0, 1e6), st.floats(0, 1e6), st.floats(1e-6, 1))
def test_compression_keeps_the_order_of_delays(a: float, b: float, scale: float) -> None:
    low, high = sorted((a, b))
    assert timewarp.compress_delay(low, scale) <= timewarp.compress_delay(high, scale)
    assert timewarp.compress_delay(high, scale) <= high


@pytest.mark.parametrize("scale", [0, -1, 2, float("nan")])
def test_a_bad_scale_is_refused_with_a_clear_error(scale: float) -> None:
    with pytest.raises(ValueError, match=r"must be a number in \(0, 1\]"):
        timewarp.validate_scale(scale)


def test_retries_inherit_the_scale_and_the_timeline_keeps_celerys_countdown() -> None:
    def configure(app: Any, ns: Any) -> None:
        @app.task(bind=True, name="tw.flaky", max_retries=2, shared=False)
        def flaky(self: Any) -> int:
            if self.request.retries < 2:
                raise self.retry(countdown=3600)
            return int(self.request.retries)

    with Harness(configure=configure, concurrency=1) as harness:
        with harness.time_scale(1e-5):  # an hour takes 36 ms
            result = harness.app.tasks["tw.flaky"].delay()
        assert result.get(timeout=5) == 2
        assert harness.timeline.countdowns(result.id) == [3600.0, 3600.0]
        published = harness.timeline.events(result.id, ["published"])
        assert [e.data["time_scale"] for e in published] == [1e-5] * 3
        assert all(0 < e.data["due_in"] <= 0.036 for e in published[1:])
        # Outside the block, new messages are not compressed.
        assert harness.app.conf[timewarp.CONF_KEY] == 1.0
