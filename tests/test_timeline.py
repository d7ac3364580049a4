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


def test_unfinished_tasks_past_its_bound_keep_recording_cheap() -> None:
    """Many tasks published and none done yet: every event stays, and the list is not compacted
    on every record (which made a publish O(n), quadratic over a batch)."""
    timeline = Timeline(max_events=100)
    compactions = 0
    compact = timeline._compact

    def counted() -> None:
        nonlocal compactions
        compactions += 1
        compact()

    timeline._compact = counted  # type: ignore[method-assign]
    for n in range(2000):
        timeline.record("published", f"t{n}", "t")
    assert len(timeline.events()) == 2000 and timeline.dropped == 0
    assert compactions <= 15, compactions  # a compaction each time the list grew by a quarter
    for n in range(2000):  # they all end: the next compactions let go of the oldest
        timeline.record("succeeded", f"t{n}", "t")
    assert timeline.dropped > 0 and timeline.kinds("t1999") == ["published", "succeeded"]


def test_compaction_lets_go_of_ended_tasks_behind_unfinished_ones() -> None:
    """The oldest events belong to tasks still running: ended tasks' events after them go instead."""
    timeline = Timeline(max_events=100)
    for n in range(40):
        timeline.record("published", f"running{n}", "t")
    for n in range(200):
        timeline.record("published", f"t{n}", "t")
        timeline.record("succeeded", f"t{n}", "t")
    assert len(timeline.events()) <= 126 and timeline.dropped >= 300
    assert all(timeline.first(f"running{n}", "published") is not None for n in range(40))


def test_both_ways_of_recording_read_back_the_same_and_leave_nothing_for_the_collector() -> None:
    """``record_values`` (the recorder's path) stores what ``record`` stores; the rows of plain
    data are untracked by the garbage collector once it has looked at them (a long timeline adds
    nothing to each collection's work)."""
    import gc

    timeline = Timeline()
    seen: list[object] = []
    unsubscribe = timeline.subscribe(seen.append)
    timeline.record("received", "a", "t", "node1", eta=None, queue="q")
    timeline.record_values("received", "b", "t", "node1", ("eta", "queue"), (None, "q"))
    timeline.record_values("started", "b", "t", None, (), ())
    unsubscribe()
    a, b = timeline.events("a")[0], timeline.events("b")[0]
    assert (
        (a.kind, a.hostname, dict(a.data))
        == (b.kind, b.hostname, dict(b.data))
        == ("received", "node1", {"eta": None, "queue": "q"})
    )
    assert timeline.kinds("b") == ["received", "started"] and dict(timeline.events("b")[1].data) == {}
    assert [e.task_id for e in seen] == ["a", "b", "b"] and seen[1] == b  # type: ignore[attr-defined]
    gc.collect()
    gc.collect()  # a row whose keys tuple ``record`` made is let go of one collection after that tuple
    assert not any(gc.is_tracked(row) for row in timeline._events)


def test_values_it_was_asked_to_remember_outlive_compaction() -> None:
    """A run deletes the queues it published to at its end: a long run's compaction must not
    make it forget the early ones (nor the task ids, with a database result backend)."""
    timeline = Timeline(max_events=100)
    timeline.remember("published", "queue")
    for n in range(300):
        queue = "early" if n < 5 else "late"
        timeline.record_values("published", f"t{n}", "t", None, ("queue", "retries"), (queue, 0))
        timeline.record("succeeded", f"t{n}", "t", "node1")
    assert timeline.dropped > 0 and timeline.first("t0", "published") is None  # t0's events went
    assert timeline.values("published", "queue") == {"early", "late"}
    assert "t0" not in timeline.values("published", "task_id")  # not asked to remember it
    assert timeline.values("succeeded", "hostname") == {"node1"} and timeline.values("succeeded", "queue") == set()
