"""Property-based proof of Celery's retry semantics on the real embedded worker.

Hypothesis generates a retry policy and a failure schedule; each example opens its own harness
(a fresh app with the task defined by that policy, a real worker, the memory broker), runs the
task under a time scale so retries take milliseconds, and compares what happened with the
reference model in ``retry_model``: attempts, final state, what the caller's ``get()`` gives,
the RETRY states, and every countdown Celery scheduled (read from the retry messages' ETAs).

Profiles: the default runs a few dozen examples (well under 60 s on 2 cores);
``--hypothesis-profile=deep`` runs many more.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from time import monotonic
from typing import Any

import pytest
from hypothesis import Phase, given, note, settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyFailure

from celery_sim.core.harness import Harness
from tests import retry_model
from tests.retry_model import EXCEPTIONS, Policy, Prediction, predict

EXCEPTION_TYPES: dict[str, type[Exception]] = {
    "ConnectionError": ConnectionError,
    "TimeoutError": TimeoutError,
    "ValueError": ValueError,
    "KeyError": KeyError,
}
#: The longest a compressed retry delay may take, so that an example runs in milliseconds.
LONGEST_DELAY_S = 0.02
TASK = "props.flaky"


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    mode = draw(st.sampled_from(["manual", "autoretry"]))
    retry_on = tuple(draw(st.lists(st.sampled_from(EXCEPTIONS), min_size=1, max_size=3, unique=True)))
    max_retries = draw(st.sampled_from(["default", None, 0, 1, 2, 4]))
    countdown = draw(st.sampled_from([None, 0, 1, 5, 30, 600, 3600]))
    if mode == "autoretry":
        return Policy(
            mode,
            retry_on,
            max_retries,
            countdown,
            backoff=draw(st.sampled_from([True, 2, 3, False])),
            backoff_max=draw(st.sampled_from([None, 1, 10, 100])),
            jitter=draw(st.sampled_from([True, False])),  # Celery's default first
        )
    return Policy(mode, retry_on, max_retries, countdown, pass_exc=draw(st.booleans()), throw=draw(st.booleans()))


@st.composite
def schedules(draw: st.DrawFn, policy: Policy) -> tuple[str, ...]:
    """Outcomes of attempts 0, 1, ...; the last one repeats. Never retries forever."""
    # Failures listed first: Hypothesis leans towards the first choices, and a schedule that
    # succeeds at once exercises no retry at all.
    outcomes = draw(st.lists(st.sampled_from([*EXCEPTIONS, "ok"]), min_size=1, max_size=6))
    if policy.limit() is None and outcomes[-1] in policy.retry_on:
        outcomes[-1] = draw(st.sampled_from(["ok", *[e for e in EXCEPTIONS if e not in policy.retry_on]]))
    return tuple(outcomes)


def define_task(app: Any, policy: Policy) -> None:
    """The task under test, as a guide would write it for ``policy``."""
    options: dict[str, Any] = {"bind": True, "name": TASK, "shared": False}  # this app only
    if policy.max_retries != "default":
        options["max_retries"] = policy.max_retries
    retry_on = tuple(EXCEPTION_TYPES[name] for name in policy.retry_on)

    def attempt(task: Any, schedule: list[str]) -> int:
        outcome = retry_model.outcome_of(tuple(schedule), task.request.retries)
        if outcome != "ok":
            raise EXCEPTION_TYPES[outcome](f"attempt {task.request.retries} failed")
        return int(task.request.retries)

    if policy.mode == "autoretry":
        options["autoretry_for"] = retry_on
        options["retry_backoff"] = policy.backoff
        options["retry_jitter"] = policy.jitter
        if policy.backoff_max is not None:
            options["retry_backoff_max"] = policy.backoff_max
        if policy.countdown is not None:
            options["retry_kwargs"] = {"countdown": policy.countdown}

        def auto(self: Any, schedule: list[str]) -> Any:
            return attempt(self, schedule)

        app.task(**options)(auto)
        return

    def manual(self: Any, schedule: list[str]) -> Any:
        try:
            return attempt(self, schedule)
        except retry_on as exc:
            kwargs: dict[str, Any] = {} if policy.countdown is None else {"countdown": policy.countdown}
            if policy.pass_exc:
                kwargs["exc"] = exc
            if not policy.throw:
                self.retry(throw=False, **kwargs)
                return retry_model.RETURNED_AFTER_RETRY
            raise self.retry(**kwargs) from exc

    app.task(**options)(manual)


def time_scale_for(policy: Policy) -> float:
    """A scale under which the longest delay the policy can schedule takes LONGEST_DELAY_S."""
    longest = max(retry_model.countdown_bounds(policy, n)[1] for n in range(8))
    return min(1.0, LONGEST_DELAY_S / max(longest, 1.0))


@dataclasses.dataclass
class Observed:
    attempts: int
    state: str
    value: object
    error: str | None
    retry_states: int
    countdowns: list[float]


def observe(policy: Policy, schedule: tuple[str, ...], timeout: float = 10.0) -> Observed:
    """Run the task on a real worker and report what happened, without looking at the model."""
    # Celery draws retry_jitter from the global random, which Hypothesis seeds alike for every
    # example: without a fresh seed every example would see the same "random" countdowns.
    random.seed()
    # One pool slot: with two, a retry due at once (countdown 0) can run and end before the attempt
    # that sent it has been marked RETRY, and that late RETRY then overwrites the final state. That
    # race is real Celery (README, "Retries"), but not what this property is about.
    with Harness(configure=lambda app, ns: define_task(app, policy), concurrency=1) as harness:
        task = harness.app.tasks[TASK]
        with harness.time_scale(time_scale_for(policy)):
            result = task.delay(list(schedule))
        value: object = None
        error: str | None = None
        try:
            value = result.get(timeout=timeout, interval=0.01)
        except Exception as exc:
            error = type(exc).__name__
        assert error != "TimeoutError" or result.state != "PENDING", f"no result within {timeout}s"
        timeline = harness.timeline
        deadline = monotonic() + timeout

        def settled() -> bool:  # every message sent has been run, and every attempt has ended
            kinds = timeline.kinds(result.id)
            ended = sum(kinds.count(k) for k in ("succeeded", "failed", "retried"))
            return kinds.count("published") == kinds.count("started") == ended

        while not settled() and monotonic() < deadline:
            timeline.wait_for(lambda e: e.task_id == result.id, timeout=0.05, since=timeline.mark())
        assert settled(), f"attempts still running after {timeout}s: {timeline.kinds(result.id)}"
        note(
            f"timeline: {[(round(e.at * 1000, 2), e.kind, e.thread, e.data.get('retries')) for e in timeline.events(result.id)]}"
        )
        return Observed(
            attempts=len(timeline.attempts(result.id)),
            state=result.state,
            value=value,
            error=error,
            retry_states=len(timeline.events(result.id, ["retried"])),
            countdowns=[c or 0.0 for c in timeline.countdowns(result.id)],
        )


def assert_matches(predicted: Prediction, observed: Observed) -> None:
    assert observed.attempts == predicted.attempts, "number of attempts"
    assert observed.state == predicted.state, "final state"
    if predicted.state == "SUCCESS":
        assert observed.value == predicted.value, "value returned to the caller"
    else:
        assert observed.error == predicted.error, "exception type raised in the caller"
    assert observed.retry_states == predicted.retry_states, "times the task was marked RETRY"
    assert len(observed.countdowns) == len(predicted.countdowns), "retries scheduled"
    for n, (got, (low, high)) in enumerate(zip(observed.countdowns, predicted.countdowns, strict=False)):
        assert low - 0.001 <= got <= high + 0.001, f"countdown of retry {n + 1}: {got} not in [{low}, {high}]"


def check_property(model: Callable[[Policy, tuple[str, ...]], Prediction]) -> Callable[[], None]:
    @given(data=st.data())
    def prop(data: st.DataObject) -> None:
        policy = data.draw(policies(), label="policy")
        schedule = data.draw(schedules(policy), label="schedule")
        predicted = model(policy, schedule)
        observed = observe(policy, schedule)
        note(f"predicted {predicted}\nobserved  {observed}")
        assert_matches(predicted, observed)

    return prop  # type: ignore[no-any-return]


def test_celery_retries_as_documented() -> None:
    check_property(predict)()


# -- the property can fail: the same search against models that are wrong in small ways ---------


def _off_by_one(policy: Policy, schedule: tuple[str, ...]) -> Prediction:
    """Believes max_retries counts attempts, not retries (a common misreading)."""
    limit = policy.limit()
    shifted = dataclasses.replace(policy, max_retries=None if limit is None else max(limit - 1, 0))
    return predict(shifted, schedule)


def _generic_error(policy: Policy, schedule: tuple[str, ...]) -> Prediction:
    """Believes the caller always gets MaxRetriesExceededError once retries run out."""
    return predict(dataclasses.replace(policy, pass_exc=False, mode="manual"), schedule)


def _no_jitter(policy: Policy, schedule: tuple[str, ...]) -> Prediction:
    """Believes retry_jitter is off by default: every backoff countdown is exactly factor * 2**n."""
    return predict(dataclasses.replace(policy, jitter=False), schedule)


@pytest.mark.parametrize("wrong_model", [_off_by_one, _generic_error, _no_jitter], ids=lambda f: f.__name__)
def test_the_property_fails_against_a_wrong_model(wrong_model: Callable[[Policy, tuple[str, ...]], Prediction]) -> None:
    search = settings(max_examples=300, phases=[Phase.generate], database=None, print_blob=False)
    # Hypothesis replays a failing example; with retry_jitter the replay draws other countdowns and
    # may pass, which it reports as FlakyFailure: the model was still caught disagreeing.
    with pytest.raises((AssertionError, FlakyFailure)) as caught:
        search(check_property(wrong_model))()
    if isinstance(caught.value, FlakyFailure):
        assert all(isinstance(e, AssertionError) for e in caught.value.exceptions), caught.value
