"""Harness(app=...): the user's own app, its task objects and routes, lent to a run and given back."""

from __future__ import annotations

import re
from typing import Any

import pytest
from celery import Celery, current_app
from celery.exceptions import NotRegistered
from kombu import Exchange, Queue

from celery_sim import DrainTimeout, Harness
from celery_sim.core.namespace import Namespace
from celery_sim.errors import HarnessError, WorkerError


class Flaky(Exception):
    pass


def make_app(**conf: Any) -> Celery:
    """A user's app as projects write it: configured for production (a Redis nobody runs here)."""
    app = Celery("proj", broker="redis://127.0.0.1:1/0", backend="redis://127.0.0.1:1/0", set_as_current=False)
    app.conf.update({"task_routes": {"proj.pay": {"queue": "payments"}}, **conf})

    @app.task(name="proj.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="proj.pay", shared=False, bind=True, autoretry_for=(Flaky,), default_retry_delay=60)
    def pay(self: Any, fail_times: int = 0) -> int:
        if self.request.retries < fail_times:
            raise Flaky("gateway timeout")
        return self.request.retries

    @app.task(name="proj.boom", shared=False)
    def boom() -> None:
        raise KeyError("the original")

    return app


def state(app: Celery) -> dict[str, Any]:
    """What a run must give back: settings, queues, the broker pool's URL, the current app."""
    app.finalize(auto=True)
    return {
        "changes": dict(app.conf.changes),
        "queues": sorted(app.amqp.queues),
        "pool": app.pool.connection.as_uri(),
        "backend": type(app.backend).__name__,
        "current": current_app._get_current_object(),
        "control": app.control.mailbox.namespace,
    }


def test_the_users_own_task_objects_run_on_the_run_broker() -> None:
    app = make_app()
    add = app.tasks["proj.add"]
    with Harness(app=app, time_scale=0.001) as h:
        assert add.delay(2, 3).get(timeout=5) == 5
        pay = app.tasks["proj.pay"].delay(fail_times=1)
        h.drain(timeout=5)
        assert pay.get(timeout=1) == 1
        h.expect(pay).ran_on("payments").retried(1, countdown=60).succeeded(1)
        assert h.main_queues == (h.queue("celery"), h.queue("payments"))


def test_the_app_is_given_back_exactly_twice_in_a_row() -> None:
    app = make_app()
    before = state(app)
    for _ in range(2):
        with Harness(app=app) as h:
            assert app.tasks["proj.pay"].delay().get(timeout=5) == 0
            published = h.timeline.events(kinds=["published"])
            assert [e.data["queue"] for e in published] == [h.queue("payments")]  # namespaced once
        assert state(app) == before


def test_the_app_is_given_back_after_a_failed_start() -> None:
    app = make_app()
    before = state(app)
    with pytest.raises(HarnessError, match="needs a broker other processes can reach"):
        Harness(app=app, worker="process").start()
    # Fails after the app was lent: no external worker answers for this run.
    with pytest.raises(WorkerError, match="no external worker consumes"):
        Harness(app=app, broker="fakeredis", worker="external", run_id="adoptfail", start_timeout=0.3).start()
    assert state(app) == before


def test_one_harness_per_app_at_a_time() -> None:
    app = make_app()
    with Harness(app=app), pytest.raises(HarnessError, match="already in a running harness"):
        Harness(app=app).start()


def test_drain_raises_the_task_error_as_the_object_it_raised() -> None:
    app = make_app()
    with Harness(app=app) as h:
        r = app.tasks["proj.boom"].delay()
        with pytest.raises(KeyError, match="the original") as raised:
            h.drain(timeout=5)
        assert raised.value is h.failure_of(r.id)
        h.drain(timeout=5)  # raised once: nothing more to wait for


def test_an_unconsumed_queue_and_an_unregistered_name_get_their_diagnosis() -> None:
    app = make_app()
    with Harness(app=app, unconsumed=("payments",)) as h:
        r = app.tasks["proj.pay"].delay()
        with pytest.raises(DrainTimeout, match="no worker consumes queue 'payments'") as timeout:
            h.drain(timeout=0.3)
        assert timeout.value.pending == [r.id]
        assert h.purge() == 1
        app.send_task("proj.nothing")
        with pytest.raises(NotRegistered, match=r"'proj\.nothing'"):
            h.drain(timeout=5, fail_fast=True)


def test_a_path_and_a_factory_name_the_app() -> None:
    with Harness(app="demos.shop.celery_app:app") as h:
        assert h.app.main == "shop"
    with Harness(app=make_app) as h:
        assert h.app.tasks["proj.add"].delay(1, 1).get(timeout=5) == 2
    with pytest.raises(HarnessError, match="module 'nope' cannot be imported"):
        Harness(app="nope.celery:app").start()
    with pytest.raises(HarnessError, match="give 'module:attr'"):
        Harness(app="nope").start()


# -- namespacing: whatever routes a task, its message goes to the run's copy of the queue ---------


def route_of(app: Celery, name: str, **options: Any) -> tuple[str, str, str]:
    route = app.amqp.router.route(dict(options), name, (), {})
    queue = route["queue"]
    return (
        queue.name,
        str(route.get("exchange") or queue.exchange.name),
        str(route.get("routing_key") or queue.routing_key),
    )


def by_callable(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> Any:
    return {"queue": "called"} if name == "proj.add" else None


ROUTINGS: list[tuple[dict[str, Any], str, dict[str, Any]]] = [
    ({"task_routes": {"proj.add": {"queue": "q1"}}}, "proj.add", {}),
    ({"task_routes": {"proj.*": {"queue": "glob"}}}, "proj.add", {}),
    ({"task_routes": ([(re.compile(r"proj\..*"), {"queue": "regex"})],)}, "proj.add", {}),
    ({"task_routes": (by_callable,)}, "proj.add", {}),
    ({"task_routes": {"proj.add": "as_string"}}, "proj.add", {}),
    (
        {
            "task_queues": [Queue("topical", Exchange("ex", "topic"), routing_key="a.#")],
            "task_routes": {"proj.add": {"queue": "topical", "routing_key": "a.b"}},
        },
        "proj.add",
        {},
    ),
    ({"task_default_queue": "main", "task_default_exchange": "mainex"}, "proj.add", {}),
    ({}, "proj.add", {"queue": "literal"}),
    ({}, "proj.add", {"queue": Queue("object", Exchange("objex"), routing_key="rk")}),
    ({"task_queues": [Queue("dflt", Exchange(""), routing_key="dflt")], "task_default_queue": "dflt"}, "proj.add", {}),
]


@pytest.mark.parametrize(("conf", "task", "options"), ROUTINGS)
def test_every_kind_of_route_lands_on_the_runs_copy(conf: dict[str, Any], task: str, options: dict[str, Any]) -> None:
    plain = make_app(**conf)
    queue, exchange, routing_key = route_of(plain, task, **options)
    app = make_app(**conf)
    with Harness(app=app) as h:
        ns: Namespace = h.ns
        got = route_of(app, task, **options)
        expected_exchange = ns.queue(exchange) if exchange else ""
        expected_key = ns.queue(routing_key) if routing_key == queue else routing_key  # Celery-made: named after it
        assert got == (ns.queue(queue), expected_exchange, expected_key)
        assert route_of(app, task, **{**options, **({"queue": got[0]} if "queue" in options else {})})[0] == got[0]
        if not options:  # a configured route: the main worker consumes it
            assert got[0] in h.main_queues
        if task == "proj.add":  # and the message reaches it through the run's exchange
            result = app.tasks[task].apply_async((2, 3), **options)
            if got[0] not in h.main_queues:
                h.start_worker([got[0]], name="extra")
            assert result.get(timeout=5) == 5
            h.expect(result).ran_on(ns.logical(got[0]))


def test_the_apps_own_base_class_and_signal_handlers_still_run() -> None:
    from celery import Task, signals

    seen: list[str] = []

    class Audited(Task):  # type: ignore[type-arg]
        def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
            seen.append(f"on_success {retval}")

    def on_prerun(sender: Any = None, **kw: Any) -> None:
        if getattr(sender, "name", "") == "proj.audited":
            seen.append("task_prerun")

    app = make_app()

    @app.task(name="proj.audited", base=Audited, shared=False)
    def audited() -> int:
        return 7

    signals.task_prerun.connect(on_prerun, weak=False)
    try:
        with Harness(app=app) as h:
            r = app.tasks["proj.audited"].delay()
            h.drain(timeout=5)
            assert r.get(timeout=1) == 7
    finally:
        signals.task_prerun.disconnect(on_prerun)
    assert seen == ["task_prerun", "on_success 7"]


@pytest.mark.timeout(120)
def test_a_worker_process_runs_the_users_app_by_its_path() -> None:
    with Harness(app="demos.shop.celery_app:app", broker="fakeredis", worker="process", concurrency=2) as h:
        from demos.shop import tasks

        with h.time_scale(0.001):
            r = tasks.charge.delay("o-9", 5, fail_times=1)
        h.drain(timeout=20)
        assert r.get(timeout=1) == {"order": "o-9", "charged": 5, "attempts": 2}
        h.expect(r).ran_on("payments").retried(1, countdown=60)
        assert h.main_worker.hostname == f"main@{h.ns.prefix}"


def test_two_harnesses_starting_at_once_cannot_both_lend_one_app() -> None:
    """The claim is atomic: of two harnesses starting together on one app, exactly one runs."""
    import threading

    from celery import Celery

    from celery_sim.core.harness import Harness
    from celery_sim.errors import HarnessError

    app = Celery("claimed", set_as_current=False)
    gate = threading.Barrier(2)
    outcomes: list[str] = []
    harnesses = [Harness(app=app), Harness(app=app)]

    def start(h: Harness) -> None:
        gate.wait(5)
        try:
            h.start()
            outcomes.append("started")
        except HarnessError as exc:
            outcomes.append("refused" if "already in a running harness" in str(exc) else str(exc))

    threads = [threading.Thread(target=start, args=(h,)) for h in harnesses]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for h in harnesses:
        h.stop()
    assert sorted(outcomes) == ["refused", "started"]
