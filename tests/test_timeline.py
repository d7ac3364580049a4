"""The timeline stays bounded on a long run, and its positions stay exact when it drops events."""

from __future__ import annotations

from celery_sim.observe.timeline import Timeline


def test_past_its_bound_it_lets_go_of_ended_tasks_only_and_positions_stay_exact() -> None:
    timeline = Timeline(max_events=100)
    timeline.record("published", "stuck", "t")  # never ends: its event must stay
    for n in range(200):
        for kind in ("published", "received", "started", "succeeded"):
            timeline.record(kind, f"t{n}", "t")  # type: ignore[arg-type]
    assert len(timeline.events()) <= 101 and timeline.dropped >= 700
    assert timeline.first("stuck", "published") is not None
    assert timeline.kinds("t199") == ["published", "received", "started", "succeeded"]
    mark = timeline.mark()
    assert mark == 801  # every event recorded, dropped or not
    for n in range(50):  # enough to drop again, past the mark
        timeline.record("published", f"late{n}", "t")
        timeline.record("succeeded", f"late{n}", "t")
    after = timeline.events(since=mark)
    assert after and all(e.task_id.startswith("late") for e in after)  # nothing from before the mark
    assert after[-1].task_id == "late49" and timeline.first("stuck", "published") is not None
    assert timeline.wait_for(lambda e: e.task_id == "late49", timeout=0, since=mark) is not None
