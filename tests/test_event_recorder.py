"""How the harness reads a worker process's task events into its timeline."""

from __future__ import annotations

import time

from celery import Celery

from celery_sim.observe.events import EventRecorder
from celery_sim.observe.timeline import Timeline


def test_an_attempt_keeps_its_own_retry_count_when_the_next_attempt_is_received_first() -> None:
    # The worker's main process sends task-received and the pool process csim-started, over two
    # connections: the retry's task-received (retries=1) can arrive before the first csim-started.
    timeline = Timeline()
    recorder = EventRecorder(Celery("events-test", set_as_current=False), timeline)
    now = time.time()
    for sent, kind, retries in (  # in the order they arrive; ``sent``: when the worker sent them
        (0.00, "task-received", 0),
        (0.02, "task-received", 1),
        (0.01, "csim-started", 0),
        (0.03, "csim-started", 1),
    ):
        event = {"type": kind, "uuid": "t1", "name": "poll", "retries": retries, "hostname": "w@h"}
        recorder._on_event({**event, "timestamp": now - 1.0 + sent})
    assert timeline.attempts("t1") == [0, 1]
