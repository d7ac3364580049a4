"""A reference model of Celery's retry semantics, written from Celery's documentation.

Sources (Celery 5.7 user guide, "Tasks" → "Retrying", and the API reference of ``Task.retry``):

* ``max_retries`` (default 3): the number of retries before giving up; ``None`` retries forever.
  So a task runs at most ``max_retries + 1`` times.
* When retries run out, ``retry()`` re-raises ``exc`` if one was passed, else raises
  ``MaxRetriesExceededError``. ``autoretry_for`` always passes the exception it caught.
* An exception not named in ``autoretry_for`` (or not caught by the task) fails the task at once.
* ``countdown`` of a retry: the one given, else ``default_retry_delay`` (180 s).
* ``retry_backoff`` (True means a factor of 1): the n-th retry (n = 0, 1, ...) waits
  ``factor * 2**n`` seconds, capped at ``retry_backoff_max`` (default 600); ``retry_jitter``
  (default True) replaces that by a random value between zero and it ("full jitter").
* ``throw=False``: ``retry()`` does not raise ``Retry``; the task carries on, and "will be marked
  successful if it returns after the retry call". The retry still runs.
* A result backend keeps the first SUCCESS it stores (later stores for the same id are ignored).

Nothing here runs Celery: it is checked against what the real worker does (test_retry_properties).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

EXCEPTIONS = ("ConnectionError", "TimeoutError", "ValueError", "KeyError")
DEFAULT_MAX_RETRIES = 3
DEFAULT_RETRY_DELAY = 180
DEFAULT_BACKOFF_MAX = 600
RETURNED_AFTER_RETRY = "returned after retry"


@dataclass(frozen=True)
class Policy:
    """How the task under test retries (``mode``: ``self.retry`` in an except clause, or ``autoretry_for``)."""

    mode: Literal["manual", "autoretry"]
    retry_on: tuple[str, ...]
    max_retries: int | Literal["default"] | None = "default"
    countdown: int | None = None
    backoff: bool | int = False  # autoretry only
    backoff_max: int | None = None  # None: Celery's default
    jitter: bool = True  # autoretry only; Celery's default
    pass_exc: bool = True  # manual only: retry(exc=exc) or retry()
    throw: bool = True  # manual only

    def limit(self) -> int | None:
        return DEFAULT_MAX_RETRIES if self.max_retries == "default" else self.max_retries


@dataclass(frozen=True)
class Prediction:
    attempts: int
    state: Literal["SUCCESS", "FAILURE"]
    value: object = None  # what get() returns on SUCCESS
    error: str | None = None  # type name of what get() raises on FAILURE
    retry_states: int = 0  # how many times the task is marked RETRY
    #: (low, high) bounds of each scheduled retry's countdown, in seconds.
    countdowns: list[tuple[float, float]] = field(default_factory=list)


def countdown_bounds(policy: Policy, retries: int) -> tuple[float, float]:
    """Bounds of the countdown of the retry scheduled by attempt number ``retries`` (0-based)."""
    if policy.mode == "autoretry" and policy.backoff:
        factor = int(policy.backoff)
        cap = min(policy.backoff_max or DEFAULT_BACKOFF_MAX, factor * 2**retries)
        return (0.0, float(cap)) if policy.jitter else (float(cap), float(cap))
    delay = float(DEFAULT_RETRY_DELAY if policy.countdown is None else policy.countdown)
    return delay, delay


def outcome_of(schedule: tuple[str, ...], attempt: int) -> str:
    """What attempt ``attempt`` does: ``ok`` or raise the named exception (the last entry repeats)."""
    return schedule[min(attempt, len(schedule) - 1)]


def predict(policy: Policy, schedule: tuple[str, ...]) -> Prediction:
    """What Celery does with ``policy`` when the task's attempts go as ``schedule`` says."""
    limit = policy.limit()
    countdowns: list[tuple[float, float]] = []
    stored: tuple[str, object, str | None] | None = None  # the first final state stored wins
    attempt = 0
    while True:
        outcome = outcome_of(schedule, attempt)
        if outcome == "ok":
            final: tuple[str, object, str | None] = ("SUCCESS", attempt, None)
        elif outcome not in policy.retry_on:
            final = ("FAILURE", None, outcome)
        elif limit is not None and attempt + 1 > limit:
            passed = policy.mode == "autoretry" or policy.pass_exc
            final = ("FAILURE", None, outcome if passed else "MaxRetriesExceededError")
        else:
            countdowns.append(countdown_bounds(policy, attempt))
            if not policy.throw:
                stored = stored or ("SUCCESS", RETURNED_AFTER_RETRY, None)
            attempt += 1
            continue
        state, value, error = stored or final
        retries = attempt if policy.throw else 0
        return Prediction(attempt + 1, state, value, error, retries, countdowns)  # type: ignore[arg-type]
