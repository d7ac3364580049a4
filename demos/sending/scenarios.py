"""The sending guide's app, run as the guide runs it: every task sent by name, then its PENDING checklist.

Each step of the guide's "task stays PENDING" troubleshooting list is produced on purpose and the
doctor (:mod:`celery_sim.tools.doctor`) must name it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from celery import Celery

from celery_sim.core.harness import Harness
from celery_sim.core.workers import probe
from celery_sim.scenarios.scenario import Context, scenario
from celery_sim.tools.doctor import examine
from demos.apps import LANE, app_harness
from demos.config import RPC_NO_STORE
from demos.doctor.checks import NO_REPLY_S, REPLY_TIMEOUT_S, names_cause
from demos.sending.celery_app import EXECUTE, HEALTH, HELLO
from demos.sending.params import example_params

APP = "demos.sending.celery_app:app"
STEP = "PENDING checklist, "

#: A bad field of the guide's params -> the dotted field the error must name.
BAD_PARAMS: list[tuple[str, Any, str]] = [
    ("no receiver", {"receiver": None}, "receiver"),
    ("unknown SPU protocol", {"spu": {"runtime": {"protocol": "SEMI3K"}}}, "spu.runtime.protocol"),
    ("bob has no input file", {"input_path": {"bob": None}}, "input_path.bob"),
    (
        "bad node address",
        {"spu": {"cluster": {"nodes": [{"party": "alice", "address": "nowhere"}]}}},
        "spu.cluster.nodes[0].address",
    ),
    ("one party only", {"parties": ["alice"]}, "parties"),
]


def _bad(params: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """``params`` with ``change`` applied (a None value deletes the field; nested dicts merge)."""
    out = dict(params)
    for key, value in change.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _bad(out[key], value)
        else:
            out[key] = value
    return out


@scenario(
    "demo.sending",
    "the sending guide's app: hello, health and a PSI job sent by name to secretflow_queue, bad params named by "
    "field, and each cause of its PENDING checklist produced and named by the doctor",
    skip_on=RPC_NO_STORE,
    lane=LANE,
)
def sending(ctx: Context) -> None:
    with app_harness(ctx, APP) as h:
        _sending(ctx, h)


def _sending(ctx: Context, h: Harness) -> None:
    queue = h.queue("secretflow_queue")
    ctx.check(
        "the worker consumes the guide's queues",
        ["default", "secretflow_queue", "web_queue"],
        sorted(h.ns.logical(q) for q in h.main_queues),
    )
    hello = h.app.send_task(HELLO, args=["guide"])
    ctx.check("hello_task by name", "Hello, guide!", str(ctx.wait(hello)).split(" (from")[0])
    sent = ctx.published(hello.id)
    ctx.check(
        "routed to secretflow_queue with routing key secretflow",
        (queue, "secretflow"),
        (sent[0].data.get("queue"), sent[0].data.get("routing_key")) if sent else None,
    )
    health = h.app.send_task(HEALTH)
    ctx.check("health_check by name", "ok", ctx.wait(health).get("status"))

    with tempfile.TemporaryDirectory(prefix="csim-psi-") as folder:
        params = example_params(Path(folder))
        job = h.app.send_task(EXECUTE, args=["job-1", params])
        done = ctx.wait(job)
        ctx.check(
            "execute_task: the PSI result",
            {"task_id": "job-1", "status": "SUCCESS", "intersection_size": 3, "receiver": "alice"},
            {k: done.get(k) for k in ("task_id", "status", "intersection_size", "receiver")},
        )
        ctx.check("the receiver's output file", "uid\nu2\nu3\nu8\n", Path(params["output_path"]["alice"]).read_text())
        for what, change, field in BAD_PARAMS:
            state, error = ctx.outcome(h.app.send_task(EXECUTE, args=["job-bad", _bad(params, change)]))
            ctx.check(
                f"bad params ({what}): FAILURE naming the field",
                ("FAILURE", f"params.{field}:"),
                (state, str(error)[: len(field) + 8]),
                passed=state == "FAILURE" and str(error).startswith(f"params.{field}:"),
            )
    _pending_checklist(ctx, h)


def _pending_checklist(ctx: Context, h: Harness) -> None:
    """The guide's list of why a task stays PENDING, each cause made and recognised."""
    app, ask = h.app, {"reply_timeout": REPLY_TIMEOUT_S, "workers": len(h.hostnames)}
    misspelled = app.send_task("tasks.secretflow.hello_task")
    ctx.eventually(lambda: misspelled.state, lambda s: s == "FAILURE", timeout=5.0)
    names_cause(
        ctx,
        f"{STEP}a task name the worker does not register",
        examine(app, misspelled.id, **ask),
        "unregistered",
        "tasks.secretflow.hello_task",
    )
    client = Celery("sending-client", set_as_current=False)
    route = {"queue": h.queue("secretflow_queue"), "routing_key": "secretflow"}
    client.conf.update({**dict(app.conf.changes), "result_backend": None, "task_routes": {HEALTH: route}})
    try:
        unseen = client.send_task(HEALTH)
        # Once it has run: while it runs, "active" is the first true answer (seen under load).
        ctx.eventually(lambda: ctx.timeline.first(unseen.id, "succeeded"), lambda e: e is not None, timeout=5.0)
        names_cause(
            ctx,
            f"{STEP}a client without a result backend",
            examine(client, unseen.id, HEALTH, **ask),
            "no-result-backend",
        )
    finally:
        client.close()
    # `celery -A demos.sending worker` without -Q consumes the default queue only: the same as the
    # worker no longer consuming secretflow_queue (cancel_consumer, acknowledged by every worker).
    queue = h.queue("secretflow_queue")
    replies = app.control.cancel_consumer(queue, destination=list(h.hostnames), reply=True, timeout=REPLY_TIMEOUT_S)
    ctx.check("cancel_consumer secretflow_queue: acknowledged", len(h.hostnames), len(replies or []))
    # Celery acknowledges before its consumer cancels (call_soon): a task sent at once was still
    # delivered to a worker process on RabbitMQ. Its active_queues change once it has.
    hosts = list(h.hostnames)

    def consuming() -> list[str]:
        answered = probe.ask(
            probe.probe_control(app), "active_queues", timeout=REPLY_TIMEOUT_S, limit=len(hosts), destination=hosts
        )
        return probe.consumers(answered, queue)

    ctx.check(
        "cancel_consumer secretflow_queue: no worker lists it in active_queues, soon after",
        [],
        ctx.eventually(consuming, lambda found: found == [], timeout=5.0),
    )
    waiting = app.send_task(HELLO)
    names_cause(
        ctx,
        f"{STEP}the worker not consuming secretflow_queue (as one started without -Q)",
        examine(app, waiting.id, HELLO, **ask),
        "unconsumed-queue",
        "1 message(s) waiting",
    )
    h.stop_workers(list(h.workers))
    names_cause(
        ctx,
        f"{STEP}no worker running",
        examine(app, waiting.id, HELLO, reply_timeout=NO_REPLY_S),
        "no-worker",
        "nobody answered ping",
    )
