"""A real Celery WorkController running in a thread, with a bounded start and stop."""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from time import monotonic
from typing import Any

from celery import Celery
from celery.concurrency import thread as thread_pool
from celery.utils import timer2
from celery.worker import WorkController, loops
from celery.worker import state as worker_state
from celery.worker.consumer import Consumer

from celery_sim.core.workers import joinblock
from celery_sim.core.workers.drainloop import capped_synloop, driver_type
from celery_sim.core.workers.probe import answers, probe_control
from celery_sim.errors import WorkerError

__all__ = ["EVENT_MODES", "EmbeddedWorker"]

log = logging.getLogger(__name__)


class _OwnShutdown(logging.Filter):
    """Drops Celery's "Got shutdown from remote" warning when it is the harness stopping its own
    embedded worker (every stop would print it into the user's captured test logs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.threadName or "").startswith("csim-worker-") or "shutdown from remote" not in str(record.msg)


logging.getLogger("celery.worker.control").addFilter(_OwnShutdown())

#: How long a stopping worker gets before its shutdown command is sent again: Celery's blocking
#: loop on Redis acts on one within about 1 s (its BRPOP timeout).
_RESEND_AFTER_S = 1.5


class PromptTimer(timer2.Timer):
    """Celery's timer thread (ETAs, retries, time-outs), stopping at once instead of within 1 s.

    Celery's ``Timer`` sleeps with ``time.sleep`` until its next entry (up to
    ``worker_timer_precision``, 1 s) and, with no entries, waits 1 s on its condition without being
    woken by ``stop()``; a worker that had run a task with an ETA took ~1 s to stop (measured). Its
    sleep is not woken by a new entry either: a rate-limited task, held 50 ms by a 20/s limit, waited
    up to the rest of a 1 s sleep (measured: 4 starts spanned 1.09 s instead of 0.15 s). Here both
    waits end when :meth:`stop` is called or an entry is added; the schedule, its entries and when
    they are due are Celery's own.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stopping = threading.Event()
        self._wake = threading.Event()

    def _do_enter(self, meth: str, *args: Any, **kwargs: Any) -> Any:
        entry = super()._do_enter(meth, *args, **kwargs)  # type: ignore[misc]
        self._wake.set()
        return entry

    def run(self) -> None:
        timer: Any = self  # Celery's Timer internals, absent from the type stubs
        try:
            self.running = True
            timer.scheduler = iter(timer.schedule)
            while not self._stopping.is_set():
                self._wake.clear()  # an entry added from here on ends the wait below
                delay = timer._next_entry()
                if delay:
                    if self.on_tick:
                        self.on_tick(delay)
                    self._wake.wait(delay)
        except Exception:  # as Celery's: a crashed timer must not pass unnoticed
            log.exception("the worker's timer thread crashed")

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        timer: Any = self
        with timer.not_empty:
            timer.not_empty.notify_all()
        if self.running:
            self.join(timer2.THREAD_TIMEOUT_MAX)  # type: ignore[attr-defined]
            self.running = False


def _frames(frame: Any) -> list[Any]:
    """``frame`` and its callers, innermost first."""
    found = []
    while frame is not None:
        found.append(frame)
        frame = frame.f_back
    return found


class ThreadPool(thread_pool.TaskPool):
    """Celery's thread pool, whose threads start as a worker's would.

    Celery's thread pool traces each task with ``current_app``, which is thread-local: a fresh
    pool thread would otherwise fall back to the process default app, and two harnesses in one
    process would run each other's tasks with the wrong app. Each thread is also marked as a
    worker thread, where ``result.get()`` raises (see :mod:`celery_sim.core.workers.joinblock`).
    """

    Timer = PromptTimer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.executor.shutdown(wait=False)  # type: ignore[has-type]  # the parent's; it has no thread yet
        self.threads: list[threading.Thread] = []
        self.executor = ThreadPoolExecutor(
            max_workers=self.limit,
            thread_name_prefix="csim-pool",
            initializer=self._start_thread,
        )

    def _start_thread(self) -> None:
        self.app.set_current()
        joinblock.mark_pool_thread()
        self.threads.append(threading.current_thread())

    def busy(self) -> list[str]:
        """What each pool thread still running a task is doing: task, id and where it is."""
        frames = sys._current_frames()
        found = []
        for thread in self.threads:
            frame = frames.get(thread.ident or -1)
            stack = traceback.extract_stack(frame) if frame is not None else []
            tracer = next(
                (f for f in _frames(frame) if f.f_code.co_name == "trace_task" and "uuid" in f.f_locals), None
            )
            if tracer is None:
                continue  # idle: waiting for work
            where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(stack[-3:]))
            found.append(f"{thread.name} runs {tracer.f_locals.get('name')!r} {tracer.f_locals['uuid']} at {where}")
        return found


class EmbeddedConsumer(Consumer):
    """Celery's consumer, whose close forgets only its own worker's requests, and whose blocking
    loop looks at a Redis broker every 50 ms (:mod:`celery_sim.core.workers.drainloop`).

    Celery keeps a worker's requests in module-level sets (``celery.worker.state``): one per
    process, as there is one worker per process. Its ``Consumer.on_close`` cancels the timer
    entry of every request in ``scheduled_requests`` and empties ``reserved_requests``: with two
    embedded workers in one process, stopping one cancelled the other's countdown and ETA tasks
    (measured: a countdown=0.3 task of the main worker never ran once a scenario's worker
    stopped). Here Celery's own close sees only this worker's requests; the others' stay.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        chosen: Any = self.__dict__.get("loop")  # Celery's pick: synloop when there is no hub
        if chosen is loops.synloop and driver_type(self.app) == "redis":
            self.loop = capped_synloop  # see celery_sim.core.workers.drainloop

    def on_close(self) -> None:
        mine = self.hostname

        def others(items: Any) -> list[Any]:
            return [r for r in list(items) if getattr(r, "hostname", None) != mine]

        scheduled: Any = getattr(worker_state, "scheduled_requests")  # noqa: B009  # a WeakSet, not in the stubs
        reserved: Any = worker_state.reserved_requests
        theirs_scheduled, theirs_reserved = others(scheduled), others(reserved)
        requests = {rid: r for rid, r in list(worker_state.requests.items()) if r.hostname != mine}
        for request in theirs_scheduled:  # out of sight of Celery's close, which cancels them
            scheduled.discard(request)
        try:
            super().on_close()
        finally:
            scheduled.update(theirs_scheduled)
            reserved.update(theirs_reserved)
            worker_state.requests.update(requests)


class _Controller(WorkController):
    """WorkController that reports readiness (``worker_ready`` never fires when embedded)."""

    def __init__(self, *args: Any, on_ready: Callable[[], None], **kwargs: Any) -> None:
        self._on_ready = on_ready
        self.crash: BaseException | None = None
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer: Any) -> None:
        self._on_ready()

    def stop(self, in_sighandler: bool = False, exitcode: int | None = None) -> None:
        # WorkController.start() logs an unrecoverable error and calls stop() from its except
        # block, so the error is still in sys.exc_info() here: keep it for the caller.
        error = sys.exc_info()[1]
        if isinstance(error, SystemExit) and error.code not in (0, None):
            error = error.__cause__ or error.__context__ or error  # a shutdown caused by an error
        if self.crash is None and isinstance(error, BaseException) and not isinstance(error, SystemExit):
            self.crash = error
        super().stop(in_sighandler=in_sighandler, exitcode=exitcode)


#: How an embedded worker sends events. "off": no event dispatcher at all (it runs without
#: heartbeat and gossip, so ``enable_events`` answers "event dispatcher unavailable"); "on": task
#: events, as ``celery worker -E``; "switchable": worker events only (heartbeats), as a plain
#: ``celery worker``, whose task events ``enable_events`` / ``disable_events`` switch.
EVENT_MODES = ("off", "on", "switchable")


class EmbeddedWorker:
    """One Celery worker (consumer + thread pool) in a background thread of this process.

    ``wake`` is called after a stop request so that a consumer blocked on the broker returns at
    once instead of after its drain timeout (Celery's blocking loop waits up to 2 s).
    """

    kind = "thread"

    def __init__(
        self,
        app: Celery,
        *,
        hostname: str,
        queues: Sequence[str],
        concurrency: int = 4,
        wake: Callable[[], None] | None = None,
        loglevel: str = "WARNING",
        events: str = "off",
    ) -> None:
        if concurrency < 1:
            raise WorkerError(f"concurrency={concurrency!r} must be at least 1")
        self.app = app
        self.hostname = hostname
        self.queues = tuple(queues)
        self.concurrency = concurrency
        self._wake = wake
        #: celery_sim's memory broker wakes the worker itself; on a real one, start() waits until
        #: the worker answers ping (its control queue is bound), or a shutdown sent soon is lost.
        self._event_driven = driver_type(app) == "memory"
        self._loglevel = loglevel
        if events not in EVENT_MODES:
            raise WorkerError(f"events={events!r}: choose one of {', '.join(EVENT_MODES)}")
        self._events = events
        self._ready = threading.Event()
        self._exited = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._controller: _Controller | None = None
        self._stop_requested = False

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float) -> None:
        """Start the worker and wait until it consumes, raising :class:`WorkerError` after ``timeout``."""
        if self._thread is not None:
            raise WorkerError(f"worker {self.hostname} was already started")
        joinblock.install()
        self._controller = _Controller(
            app=self.app,
            hostname=self.hostname,
            pool=ThreadPool,
            concurrency=self.concurrency,
            queues=list(self.queues),
            loglevel=self._loglevel,
            without_heartbeat=self._events != "switchable",
            without_mingle=True,
            without_gossip=True,
            task_events=self._events == "on",
            consumer_cls=EmbeddedConsumer,
            # kombu's event loop (Hub) is one per process: two embedded workers on an async
            # transport (Redis, AMQP) would share it, and stopping one closes it for both. Each
            # embedded worker therefore runs Celery's blocking consumer loop instead.
            use_eventloop=False,
            on_ready=self._ready.set,
        )
        self._thread = threading.Thread(target=self._run, name=f"csim-worker-{self.hostname}", daemon=True)
        self._thread.start()
        deadline = monotonic() + timeout
        while not self._ready.is_set():
            if self._exited.is_set():
                cause = self._error or self._controller.crash
                detail = f"{type(cause).__name__}: {cause}" if cause else "no error was reported"
                raise WorkerError(f"worker {self.hostname} exited while starting: {detail}") from cause
            remaining = deadline - monotonic()
            if remaining <= 0:
                self.stop(timeout=1.0)
                raise WorkerError(
                    f"worker {self.hostname} was not consuming after {timeout:g}s; "
                    "is the broker reachable? (raise --timeout if it is slow)"
                )
            self._ready.wait(min(remaining, 0.05))
        if not self._event_driven:
            self._await_control(deadline)

    def _await_control(self, deadline: float) -> None:
        """Wait until the worker answers ``ping``: on a real broker its remote-control queue can
        be bound after it consumes tasks, and a ``shutdown`` sent before then is lost (measured on
        RabbitMQ: the stop of a worker stopped at once waited out its whole timeout)."""
        control = probe_control(self.app)
        wait = 0.025  # a ping sent before the queue is bound is lost: ask again soon, then less often
        while monotonic() < deadline:
            if answers(control, self.hostname, wait):
                return
            wait = min(2 * wait, 0.25)
            if self._exited.is_set():
                return  # start() reports it
        log.warning("worker %s consumes but did not answer ping; its stop may take its full timeout", self.hostname)

    def _run(self) -> None:
        assert self._controller is not None
        self.app.set_current()
        try:
            self._controller.start()
        except BaseException as exc:  # reported by start()/stop(), never lost
            self._error = exc
            log.exception("embedded worker %s crashed", self.hostname)
        finally:
            self._exited.set()

    def request_stop(self) -> None:
        """Ask the worker to stop (warm: running tasks finish) without waiting for it.

        The request is Celery's remote-control ``shutdown`` addressed to this node: the worker
        receives it on its own connection and raises ``WorkerShutdown`` in its own thread, as a
        real worker does. (Calling ``WorkController.stop()`` from another thread would use the
        worker's broker connection from two threads at once; on Redis that can hang both.)
        """
        if self._thread is None or self._stop_requested:
            return
        self._stop_requested = True
        if self._thread.is_alive():
            self.app.control.shutdown(destination=[self.hostname])
            if self._wake is not None:
                self._wake()

    def stop(self, timeout: float) -> None:
        """Stop consuming, finish running tasks and join, raising :class:`WorkerError` after ``timeout``."""
        if self._thread is None:
            return
        self.request_stop()
        deadline = monotonic() + timeout
        self._thread.join(min(timeout, _RESEND_AFTER_S))
        while self._thread.is_alive() and self._stop_requested and monotonic() < deadline:
            # A shutdown sent just after the worker started can be lost (measured on Redis: every
            # worker after the first of a harness, stopped at once, waited out its whole timeout);
            # sent again, it is acted on. A worker that got the first one ignores the rest.
            self.app.control.shutdown(destination=[self.hostname])
            self._thread.join(max(0.0, min(_RESEND_AFTER_S, deadline - monotonic())))
        if self._thread.is_alive() and self._controller is not None:
            # The shutdown command was not acted on (the worker is not consuming its control
            # queue): stop it from here as a last resort.
            self._controller.stop()
            if self._wake is not None:
                self._wake()
            self._thread.join(min(timeout, 2.0))
        if self._thread.is_alive():
            pool = getattr(self._controller, "pool", None)
            busy = pool.busy() if isinstance(pool, ThreadPool) else []
            doing = "; ".join(busy) if busy else "no pool thread is running a task"
            raise WorkerError(
                f"worker {self.hostname} did not stop within {timeout:g}s (tasks on a thread pool cannot be "
                f"killed; the thread is left to finish): {doing}"
            )
        self._thread = None
