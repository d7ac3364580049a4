"""Assertions on one task's timeline that read like the guides: ``h.expect(r).ran_on("payments")``.

Each method checks what the run observed and raises ``AssertionError`` naming the task, what was
expected and what was observed; each returns the expectation, so checks chain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery_sim.observe.timeline import TASK_END_KINDS

if TYPE_CHECKING:
    from celery_sim.core.harness import Harness

__all__ = ["TaskExpectation"]

#: How far an observed countdown may be from the one expected: Celery computes the ETA from a
#: clock read a moment before the message is created.
COUNTDOWN_TOLERANCE_S = 0.05


class TaskExpectation:
    """What the run observed of one task (all its attempts), checked against what you expect."""

    def __init__(self, harness: Harness, result_or_id: Any) -> None:
        self.harness = harness
        self.task_id = str(getattr(result_or_id, "id", result_or_id))
        published = harness.timeline.first(self.task_id, "published")
        self.name = published.name if published is not None else "?"

    def _fail(self, expected: str, observed: object) -> AssertionError:
        return AssertionError(f"task {self.name} {self.task_id}: expected {expected}, observed {observed}")

    @property
    def kinds(self) -> list[str]:
        """The kinds of the task's events, in order (``progress`` left out)."""
        return [k for k in self.harness.timeline.kinds(self.task_id) if k != "progress"]

    def went_through(self, *kinds: str) -> TaskExpectation:
        """The task's events were exactly ``kinds``, in order (``progress`` aside), e.g.
        ``"published", "received", "started", "retried", ..., "succeeded"``."""
        if self.kinds != list(kinds):
            raise self._fail(f"the events {list(kinds)}", self.kinds)
        return self

    def ran_on(self, queue: str) -> TaskExpectation:
        """Every message of the task (first call and retries) went to ``queue`` (your name for it)."""
        ns = self.harness.ns
        queues = [
            ns.logical(str(e.data.get("queue"))) for e in self.harness.timeline.events(self.task_id, ["published"])
        ]
        if not queues or any(q != queue for q in queues):
            raise self._fail(f"every message on queue {queue!r}", f"queues {queues or 'none (never published)'}")
        return self

    def retried(self, times: int | None = None, *, countdown: float | None = None) -> TaskExpectation:
        """The task was retried (``times`` times), each retry scheduled ``countdown`` seconds after it
        was published, as Celery computed it (before any time compression)."""
        countdowns = self.harness.timeline.countdowns(self.task_id)
        if not countdowns if times is None else len(countdowns) != times:
            raise self._fail(f"{'some' if times is None else times} retries", f"{len(countdowns)}")
        if countdown is not None:
            wrong = [c for c in countdowns if c is None or abs(c - countdown) > COUNTDOWN_TOLERANCE_S]
            if wrong:
                raise self._fail(f"each retry due {countdown:g}s after publishing", f"countdowns {countdowns}")
        return self

    def succeeded(self, *result: Any) -> TaskExpectation:
        """The task's last attempt succeeded (with ``result``, if given)."""
        ends = self.harness.timeline.events(self.task_id, TASK_END_KINDS)
        if not ends or ends[-1].kind != "succeeded":
            raise self._fail("success", ends[-1].kind if ends else f"no end yet ({self.kinds})")
        if result and ends[-1].data.get("result") != result[0]:
            raise self._fail(f"result {result[0]!r}", repr(ends[-1].data.get("result")))
        return self

    def failed(self, exception: type[BaseException] | str | None = None) -> TaskExpectation:
        """The task's last attempt failed (with an ``exception`` of that type or type name)."""
        ends = self.harness.timeline.events(self.task_id, ["succeeded", "failed"])
        if not ends or ends[-1].kind != "failed":
            raise self._fail("failure", ends[-1].kind if ends else f"no end yet ({self.kinds})")
        wanted = exception if isinstance(exception, str) or exception is None else exception.__name__
        if wanted is not None and ends[-1].data.get("exception") != wanted:
            raise self._fail(f"{wanted}", ends[-1].data.get("exception"))
        return self
