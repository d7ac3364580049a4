"""Time compression: ETA and expiry of published task messages, rescaled by a factor.

Real retry policies wait seconds to hours. With a time scale ``s`` (``0.001``: one second of the
policy takes one millisecond), every task message published with a delay is rewritten as it leaves
the publisher: ``eta = now + (eta - now) * s`` and likewise ``expires``. Celery computes the ETA
first (countdown, backoff, jitter, all its own code); only then is the delay shortened. The worker,
its timer and the broker are untouched: they see an ordinary message due a little later.

The scale travels in the message's headers (:data:`HEADER`), so that every message a task
publishes itself, such as its retries (Celery copies the request's headers into the retry),
is compressed the same way, in whatever process the worker runs. The original ETA and expiry, as
Celery computed them, are kept by the caller (:class:`Warp`, recorded in the timeline).

Limits, by design: only the delays carried by messages shrink. Time measured inside a task
(``time.sleep``, ``datetime.now()``), ``request.eta`` as the task reads it (it is the compressed
ETA the worker acted on), rate limits, time limits, the broker's visibility timeout and beat's
schedule run on the real clock. An ``expires`` inherited by a retry is not compressed twice.
Compression keeps the order of delays (it is monotonic) but not their size relative to the time
tasks take to run: a 30 s countdown at scale 1/1000 is shorter than a task that works for 50 ms.
So a compressed delay never drops below a floor (:func:`min_delay`: :data:`MIN_DELAY_S`, or
:data:`DB_MIN_DELAY_S` with a database result backend), and a scenario whose story depends on a
retry coming after some work chooses a scale that keeps it there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

__all__ = [
    "CONF_KEY",
    "DB_MIN_DELAY_S",
    "HEADER",
    "MIN_DELAY_S",
    "Warp",
    "apply",
    "compress_delay",
    "conf_scale",
    "min_delay",
    "parse_time",
    "scaled",
    "validate_scale",
]

#: Message header carrying the scale (and the expiry already compressed) from publisher to retries.
HEADER = "csim_time_scale"
_EXPIRES_SENT = "csim_expires_sent"
#: A compressed delay is never shorter than this (unless the original was): Celery's own
#: bookkeeping after publishing a retry (marking the task RETRY) takes about a millisecond, and a
#: retry due sooner than that could overtake it, a race the real delay would never allow.
MIN_DELAY_S = 0.005
#: The floor with a database result backend (``db+...``), where that bookkeeping is a transaction.
#: Measured with db+sqlite: at 5 ms, a retry's write raced the previous attempt's in 1 run of 3 of
#: the retries family (SQLite has no row locks): a SUCCESS replaced by a late RETRY, or a row left
#: with one write's state and the other's result. Real countdowns are seconds; this keeps them
#: longer than the write.
DB_MIN_DELAY_S = 0.1
#: App setting holding the scale for messages published without the header (set by the harness).
CONF_KEY = "csim_time_scale"


def validate_scale(scale: float) -> float:
    """``scale`` if it is a usable time scale (0 < scale <= 1), else a ValueError naming it."""
    if not isinstance(scale, (int, float)) or math.isnan(scale) or not 0 < scale <= 1:
        raise ValueError(f"time scale {scale!r} must be a number in (0, 1]: 0.001 makes a 1 s delay take 1 ms")
    return float(scale)


def conf_scale(conf: Any) -> float:
    """The time scale an app's configuration ``conf`` sets (1.0 when none).

    Read first from the settings written on the app (``conf.changes``, where the run and
    :func:`scaled` put it): a plain dict read, where Celery's layered lookup costs ~6 µs a publish.
    """
    changes = getattr(conf, "changes", None)
    value = changes.get(CONF_KEY) if isinstance(changes, dict) else None
    if value is None:
        value = conf.get(CONF_KEY)
    return float(value or 1.0)


@contextmanager
def scaled(conf: MutableMapping[str, Any], scale: float) -> Iterator[None]:
    """Within the block, the app whose configuration is ``conf`` publishes with time scale ``scale``."""
    previous = conf.get(CONF_KEY)
    conf[CONF_KEY] = validate_scale(scale)
    try:
        yield
    finally:
        conf[CONF_KEY] = previous


def parse_time(value: Any) -> datetime | None:
    """A message's ISO 8601 ``eta``/``expires`` as an aware datetime (naive means UTC, as in Celery)."""
    if value is None or value == "":
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


class Warp(NamedTuple):
    """What :func:`apply` did to one message: the times Celery computed, and the times sent.

    A named tuple: made on every publish, it costs a third of a frozen dataclass (0.4 against 1.2 µs).
    """

    scale: float
    published_at: datetime
    eta: datetime | None = None
    eta_sent: datetime | None = None
    expires: datetime | None = None
    expires_sent: datetime | None = None

    @property
    def due_in(self) -> float | None:
        """Seconds from sending (now) until the worker may run the message (its compressed ETA)."""
        if self.eta_sent is None:
            return None
        return (self.eta_sent - datetime.now(timezone.utc)).total_seconds()

    @property
    def countdown(self) -> float | None:
        """Seconds between publishing and the ETA Celery computed (before compression)."""
        return None if self.eta is None else (self.eta - self.published_at).total_seconds()


def min_delay(backend_kind: str | None) -> float:
    """The floor of a compressed delay with a result backend of this kind (see ``brokers.backend_kind``)."""
    return DB_MIN_DELAY_S if backend_kind == "db" else MIN_DELAY_S


def compress_delay(delay: float, scale: float, floor: float = MIN_DELAY_S) -> float:
    """``delay`` seconds under ``scale``, but never below ``floor`` unless it was already shorter."""
    if delay <= 0:
        return delay
    return max(delay * scale, min(delay, floor))


def _compress(moment: datetime, now: datetime, scale: float, floor: float) -> datetime:
    return now + timedelta(seconds=compress_delay((moment - now).total_seconds(), scale, floor))


def apply(
    headers: MutableMapping[str, Any],
    custom_headers: MutableMapping[str, Any],
    default_scale: float,
    now: datetime | None = None,
    floor: float | Callable[[], float] = MIN_DELAY_S,
) -> Warp:
    """Compress ``headers``' eta/expires in place, by the scale in ``custom_headers`` or ``default_scale``.

    ``headers`` are the task message's protocol headers; ``custom_headers`` are the headers the
    publisher adds to them (Celery's ``apply_async(headers=...)``), which retries inherit. When a
    scale other than 1 is in force it is written into ``custom_headers`` so the retries carry it.
    No compressed delay is shorter than ``floor`` (see :func:`min_delay`; a callable is asked
    only when there is a delay to compress).
    """
    now = now or datetime.now(timezone.utc)
    scale = validate_scale(float(custom_headers.get(HEADER) or default_scale))
    eta = parse_time(headers.get("eta"))
    expires = parse_time(headers.get("expires"))
    if scale == 1.0:
        return Warp(1.0, now, eta, eta, expires, expires)
    custom_headers[HEADER] = scale
    if callable(floor):
        floor = floor()
    eta_sent = None if eta is None else _compress(eta, now, scale, floor)
    if eta_sent is not None:
        headers["eta"] = eta_sent.isoformat()
    expires_sent = expires
    already = parse_time(custom_headers.get(_EXPIRES_SENT))
    if expires is not None and expires != already:  # a retry inherits its first expiry, compressed already
        expires_sent = _compress(expires, now, scale, floor)
        headers["expires"] = expires_sent.isoformat()
        custom_headers[_EXPIRES_SENT] = expires_sent.isoformat()
    return Warp(scale, now, eta, eta_sent, expires, expires_sent)
