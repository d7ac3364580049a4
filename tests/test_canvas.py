"""The canvas family: stable verdicts across runs, checks that fail when Celery does otherwise, the timeline view."""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from typing import Any

import pytest
from rich.console import Console

from celery_sim.core.harness import Harness
from celery_sim.reports.console import render_timeline
from celery_sim.scenarios.catalog import default_config, load_catalog
from celery_sim.scenarios.runner import Runner
from celery_sim.scenarios.scenario import ScenarioResult, Status

CATALOG = load_catalog()
CANVAS = [s for s in CATALOG.all() if s.family == "canvas"]


def run(names: list[str], tamper: Callable[[Any], None] | None = None) -> list[ScenarioResult]:
    demo_configure = default_config().configure
    assert demo_configure is not None

    def configure(app: Any, ns: Any) -> None:
        demo_configure(app, ns)
        if tamper is not None:
            app.finalize()
            tamper(app)

    return Runner(lambda: Harness(default_config(configure=configure))).run(CATALOG.select(names)).results


def test_the_family_gives_identical_verdicts_twice_in_one_process_in_random_order() -> None:
    names = [s.name for s in CANVAS]
    shuffled = random.Random(7).sample(names, len(names))
    verdicts = []
    for order in (names, shuffled):
        results = run(order)
        verdicts.append({r.name: (r.status, [(c.name, c.passed) for c in r.checks]) for r in results})
    assert verdicts[0] == verdicts[1]
    assert all(status is Status.PASSED for status, _ in verdicts[0].values())


def replace_body(task: str, body: Callable[..., Any]) -> Callable[[Any], None]:
    def tamper(app: Any) -> None:
        app.tasks[task].run = body

    return tamper


def _raise_key_error(message: Any = None) -> None:
    raise KeyError(message)


SABOTAGE = {
    "canvas.chain": (replace_body("demos.canvas.process", lambda data: "tampered"), "each result passed to the next"),
    "canvas.group": (replace_body("demos.canvas.add", lambda x, y, work_s=0: x * y), "results in the group's order"),
    "canvas.chord": (
        replace_body("demos.canvas.collect", lambda values: sorted(values, reverse=True)),
        "callback received the results in header order",
    ),
    "canvas.nested": (replace_body("demos.canvas.validate", lambda data: data), "final value"),
    "canvas.chord_error": (
        replace_body("demos.canvas.fail", lambda message: None),
        "the caller's get() raises the header task's own exception",
    ),
    "canvas.nested_chord_header": (
        replace_body("demos.canvas.collect", lambda values: values[:-1]),
        "a header of chains ending in groups, 1 slot(s): the callback gets every header result",
    ),
    "canvas.chord_error_type": (
        replace_body("demos.canvas.fail", _raise_key_error),
        "single header task, single-task body",
    ),
    "canvas.link": (
        replace_body("demos.canvas.on_success", lambda result, key: None),
        "success: only on_success ran, once",
    ),
    "canvas.task_class": (replace_body("demos.canvas.hooked_ok", lambda x: x), "result"),
    "canvas.get_in_task": (
        replace_body("demos.canvas.join_inside", lambda x: "get() returned"),
        "get() inside a task raises",
    ),
}


def test_every_canvas_scenario_has_a_sabotage() -> None:
    assert sorted(SABOTAGE) == sorted(s.name for s in CANVAS)


@pytest.mark.parametrize("name", sorted(SABOTAGE))
def test_a_canvas_check_fails_when_a_task_behaves_otherwise(name: str) -> None:
    tamper, check = SABOTAGE[name]
    (result,) = run([name], tamper)
    assert result.status in (Status.FAILED, Status.TIMEOUT)
    assert check in [c.name for c in result.checks if not c.passed]


def test_the_timeline_shows_the_chord_header_before_its_callback() -> None:
    (result,) = run(["canvas.chord"])
    output = io.StringIO()
    render_timeline(Console(file=output, width=120, color_system=None), result)
    rows = {line.split()[0] + line.split()[1]: line for line in output.getvalue().splitlines()[1:]}
    header = [line for key, line in rows.items() if key.startswith("value_after")]
    (callback,) = [line for key, line in rows.items() if key.startswith("collect")]
    assert len(header) == 3
    assert callback.index("█") >= max(line.rindex("█") for line in header)
    assert min(line.index("█") for line in header) < callback.index("█")


@pytest.mark.parametrize("concurrency", [1, 2, 4])
def test_the_group_asks_only_for_the_overlap_the_pool_can_give(concurrency: int) -> None:
    [result] = (
        Runner(lambda: Harness(default_config(concurrency=concurrency))).run(CATALOG.select(["canvas.group"])).results
    )
    assert result.status is Status.PASSED, [c for c in result.checks if not c.passed] or result.diagnosis
    [at_once] = [c for c in result.checks if c.name.startswith("most members running at once")]
    assert at_once.expected == min(concurrency, 3)


def test_the_whole_family_passes_on_a_worker_with_one_slot() -> None:
    # A one-slot worker is what many test set-ups use: no canvas scenario may jam it.
    results = Runner(lambda: Harness(default_config(concurrency=1))).run(CANVAS).results
    assert {r.name: r.status for r in results} == {s.name: Status.PASSED for s in CANVAS}, [
        (r.name, r.diagnosis, [c for c in r.checks if not c.passed]) for r in results if r.status is not Status.PASSED
    ]


def _adversarial(app: Any) -> dict[str, tuple[Any, Any]]:
    """Canvas shapes others' tests use: shape -> (workflow, what real Redis gives, measured)."""
    from celery import chain, chord, group

    t = app.tasks
    add, double, collect, fail = (
        t["demos.canvas.add"],
        t["demos.canvas.double"],
        t["demos.canvas.collect"],
        t["demos.canvas.fail"],
    )
    errback = t["demos.canvas.on_failure"].s("adversarial")
    return {
        "a chord nested in a chain": (chain(add.s(1, 1), chord([double.s(), double.s()], collect.s())), [4, 4]),
        # The second chord's header task receives the first chord's list: double([2, 4]) repeats it.
        "a chain of chords": (
            chain(chord([add.s(1, 1), add.s(2, 2)], collect.s()), chord([double.s()], collect.s())),
            [[2, 4, 2, 4]],
        ),
        "a chord of one": (chord([add.s(1, 1)], collect.s()), [2]),
        "a group of one": (group(add.s(1, 1)), [2]),
        "an empty group": (group([]), []),
        "a chord with an empty header": (chord([], collect.s()), []),
        "a chain ending in a chord whose header holds a group": (
            chain(add.s(1, 1), chord([group(double.s(), double.s()), double.s()], collect.s())),
            [4, 4, 4],
        ),
        "a group with a failing member": (group(add.s(1, 1), fail.s("x")), "ValueError('x')"),
        "link_error on a header task": (
            chord([add.s(1, 1), fail.s("y").on_error(errback)], collect.s()),
            "ValueError('y')",
        ),
        "link_error on the body": (chord([add.s(1, 1)], fail.si("z").on_error(errback)), "ValueError('z')"),
        "link_error on a chain step": (chain(add.s(1, 1), fail.s().on_error(errback), double.s()), "ValueError(2)"),
    }


def _outcome(workflow: Any) -> Any:
    try:
        return workflow.apply_async().get(timeout=8)
    except Exception as exc:
        return repr(exc)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_adversarial_canvas_shapes_give_what_redis_gives_on_the_embedded_pair(concurrency: int) -> None:
    with Harness(default_config(concurrency=concurrency)) as h:
        shapes = _adversarial(h.app)
        observed = {name: _outcome(workflow) for name, (workflow, _) in shapes.items()}
    assert observed == {name: expected for name, (_, expected) in shapes.items()}


@pytest.mark.real_broker
def test_the_adversarial_shapes_oracle_is_what_real_redis_gives() -> None:
    from .test_real_brokers import REAL_BROKERS, need

    need(REAL_BROKERS[0])
    with Harness(default_config(broker=REAL_BROKERS[0], concurrency=1)) as h:
        shapes = _adversarial(h.app)
        observed = {name: _outcome(workflow) for name, (workflow, _) in shapes.items()}
    assert observed == {name: expected for name, (_, expected) in shapes.items()}
