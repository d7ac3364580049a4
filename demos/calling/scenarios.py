"""Calling modes: which run locally, which go through the broker and a worker."""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

from celery.bin.base import CLIContext
from celery.bin.call import call as celery_call_command
from celery.exceptions import NotRegistered
from celery.result import AsyncResult, EagerResult

from celery_sim.scenarios.scenario import Context, scenario
from demos.calling.tasks import add, whoami


def _published(ctx: Context) -> list[str]:
    return [e.name for e in ctx.events(kinds=["published"])]


@scenario("calling.direct", "task() is a plain function call: it runs here, nothing reaches the broker")
def direct(ctx: Context) -> None:
    info = whoami("direct")
    ctx.check("returns the value itself (no AsyncResult)", "dict", type(info).__name__)
    ctx.check("ran in the calling thread", threading.current_thread().name, info["thread"])
    ctx.check("request.called_directly", True, info["called_directly"])
    ctx.check("messages published to the broker", [], _published(ctx))


@scenario("calling.apply", ".apply() runs the task eagerly in this thread, through Celery's tracer, without a broker")
def apply(ctx: Context) -> None:
    result = whoami.apply(args=("apply",))
    ctx.check("returns an EagerResult", EagerResult.__name__, type(result).__name__)
    ctx.check("state right after the call", "SUCCESS", result.state)
    info = result.get()
    ctx.check("ran in the calling thread", threading.current_thread().name, info["thread"])
    ctx.check("request.is_eager", True, info["is_eager"])
    ctx.check("messages published to the broker", [], _published(ctx))
    ctx.check("timeline: Celery's signals fired locally", ["started", "succeeded"], ctx.timeline.kinds(result.id))


def _ran_on_main(ctx: Context, name: str, task_id: str) -> None:
    hosts, ran = ctx.harness.main_hostnames, ctx.ran_on(task_id)
    ctx.check(name, hosts[0] if len(hosts) == 1 else f"one of {list(hosts)}", ran, passed=ran in hosts)


def _worker_checks(ctx: Context, result: AsyncResult, info: dict[str, Any], queue: str) -> None:
    _ran_on_main(ctx, "ran on the main worker", result.id)
    thread = str(info["thread"])
    if ctx.harness.config.worker == "thread":  # the embedded worker: the threads pool in this process
        ctx.check(
            "ran in a worker pool thread, not the caller's",
            "csim-pool-*",
            thread,
            passed=thread.startswith("csim-pool") and info["pid"] == os.getpid(),
        )
    else:
        ctx.check(
            "ran in a worker process, not the caller's",
            f"a process other than {os.getpid()}",
            info["pid"],
            passed=info["pid"] != os.getpid(),
        )
    ctx.check("delivered from queue", ctx.harness.ns.logical(queue), ctx.harness.ns.logical(str(info["routing_key"])))
    ctx.check("timeline", ["published", "received", "started", "succeeded"], ctx.timeline.kinds(result.id))


@scenario("calling.delay", ".delay(*args) publishes a message; a worker runs the task; get() fetches the result")
def delay(ctx: Context) -> None:
    result = add.delay(2, 3)
    ctx.check("returns an AsyncResult", AsyncResult.__name__, type(result).__name__)
    ctx.check("result via broker and worker", 5, ctx.wait(result))
    probe = whoami.delay("delay")
    _worker_checks(ctx, probe, ctx.wait(probe), ctx.queue("default"))


@scenario("calling.apply_async", ".apply_async(args, kwargs, **options) is delay() with routing and scheduling options")
def apply_async(ctx: Context) -> None:
    queue = ctx.queue("web_queue")
    result = whoami.apply_async(args=("apply_async",), queue=queue)
    info = ctx.wait(result)
    _worker_checks(ctx, result, info, queue)
    published = ctx.timeline.first(result.id, "published")
    ctx.check(
        "published to the queue given in options",
        "web_queue",
        ctx.harness.ns.logical(str(published.data["queue"])) if published else None,
    )


@scenario("calling.send_task", "app.send_task('name') calls a task by name, without importing its code")
def send_task(ctx: Context) -> None:
    result = ctx.app.send_task("demos.calling.add", args=(4, 5), queue=ctx.queue("default"))
    ctx.check("result of the task sent by name", 9, ctx.wait(result))
    ctx.check("timeline", ["published", "received", "started", "succeeded"], ctx.timeline.kinds(result.id))
    # A typo in the name is not caught by the caller: it gets an id. The worker finds no such task,
    # drops the message and stores a FAILURE with NotRegistered, which get() raises.
    typo = ctx.app.send_task("demos.calling.ad", args=(4, 5), queue=ctx.queue("default"))
    ctx.check(
        "a misspelled name still returns a task id to the caller, and publishes the message",
        (True, "demos.calling.ad"),
        (
            isinstance(typo.id, str) and len(typo.id) == 36,
            getattr(ctx.timeline.first(typo.id, "published"), "name", None),
        ),
    )
    try:
        ctx.wait(typo)
        raised = "nothing"
    except NotRegistered as exc:
        raised = f"NotRegistered({exc})"
    ctx.check("get() raises", "NotRegistered('demos.calling.ad')", raised)
    ctx.check("worker reported the name as unregistered", ["published", "unknown"], ctx.timeline.kinds(typo.id))
    ctx.check("state", "FAILURE", typo.state)


class _CapturingCLIContext(CLIContext):  # type: ignore[misc]
    """Celery's CLI context, printing into a list instead of the terminal."""

    def __init__(self, app: Any) -> None:
        super().__init__(app=app, no_color=True, workdir=None, quiet=False)
        self.output: list[str] = []

    def echo(self, message: Any = None, **kwargs: Any) -> None:
        self.output.append(str(message))


@scenario(
    "calling.celery_call", "`celery call` sends the task to the broker (it is send_task); it does not run it locally"
)
def celery_call(ctx: Context) -> None:
    cli = _CapturingCLIContext(ctx.app)
    args = ["demos.calling.whoami", "--args", '["celery call"]', "--queue", ctx.queue("default")]
    celery_call_command.main(args=args, obj=cli, standalone_mode=False)
    printed = " ".join(cli.output).strip()
    ctx.check("prints a task id, not the task's result", "a task id (UUID)", printed, passed=_is_uuid(printed))
    sent = ctx.timeline.first(printed, "published") if _is_uuid(printed) else None
    ctx.check("the task was sent to the broker", True, sent is not None)
    if sent is None:
        return  # it ran (if at all) in the terminal: nothing to wait for
    result = AsyncResult(printed, app=ctx.app)
    info = ctx.wait(result)
    _ran_on_main(ctx, "the task ran on a worker, not in the terminal", printed)
    ctx.check(
        "not in the calling thread",
        threading.current_thread().name,
        info["thread"],
        passed=info["thread"] != threading.current_thread().name,
    )
    ctx.check("timeline", ["published", "received", "started", "succeeded"], ctx.timeline.kinds(printed))


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
