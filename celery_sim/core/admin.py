"""A run's queues on its broker: which exist, how full, purging, and deleting them (and its results) at the end."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from celery import Celery
from kombu.exceptions import ChannelError

from celery_sim.core.adopt import delete_queues, release_backend
from celery_sim.core.cleanup import delete_run_keys
from celery_sim.errors import HarnessError

if TYPE_CHECKING:
    from celery_sim.core.harness import Harness

__all__ = ["RunQueues", "message_count"]

log = logging.getLogger(__name__)


def message_count(app: Celery, queue: str) -> int | None:
    """Messages waiting in ``queue`` on ``app``'s broker, by a passive declare (which consumes
    nothing); None when the broker has no such queue (on Redis: an empty one)."""
    with app.connection_for_read() as conn:
        channel: Any = conn.channel()
        try:
            return int(channel.queue_declare(queue, passive=True).message_count)
        except ChannelError:
            return None
        finally:
            channel.close()


class RunQueues:
    """The broker side of one run: every queue name here is the run's (namespaced) name."""

    def __init__(self, harness: Harness) -> None:
        self.h = harness

    def known_queues(self) -> list[str]:
        """This run's queues: declared, consumed, or published to."""
        names: set[str] = {q.name for q in self.h.app.amqp.queues.values()}
        names.update(q for w in self.h.workers for q in w.queues)
        names.update(str(queue) for queue in self.h.timeline.values("published", "queue") if queue)
        return sorted(n for n in names if self.h.ns.owns(n))

    def queue_size(self, queue: str) -> int:
        """Messages waiting in ``queue`` (your name for it, or the run's).

        A queue the broker does not know holds no message (on Redis an empty queue does not exist).
        """
        return message_count(self.h.app, self.h.ns.queue(queue)) or 0

    def release(self, backends: Iterable[Any]) -> None:
        """Everything the run put on its broker and result store, gone: its queues and exchanges,
        its results, the result consumers of ``backends``, then the rpc reply queues. Each step is
        attempted whatever the one before did (the broker may be gone: stopping must finish)."""
        run_id = self.h.ns.run_id
        for delete, what in ((self.delete_from_broker, "queues and exchanges"), (self.delete_results, "results")):
            try:
                delete()
            except Exception as exc:
                log.warning("could not delete the %s of run %s: %r", what, run_id, exc)
        for backend in backends:
            try:
                release_backend(backend)
            except Exception as exc:  # a consumer the broker already cancelled
                log.warning("could not stop a result consumer of run %s: %r", run_id, exc)
        try:
            self.delete_reply_queues()
        except Exception as exc:
            log.warning("could not delete the rpc reply queues of run %s: %r", run_id, exc)

    def delete_reply_queues(self) -> None:
        """Delete the rpc:// reply queues this run's threads made: named by thread, not by run,
        and left on the broker for a day otherwise. Call it once their consumers are stopped."""
        delete_queues(self.h.app, self.h.reply_queues)

    def delete_from_broker(self) -> None:
        """Delete this run's queues (and their messages) and exchanges, so that a shared broker keeps
        no trace of the run.

        In "external" mode the main queues, purged only, and the control and event exchanges stay:
        the user's workers still consume them.
        """
        external = self.h.config.worker == "external"
        keep = set(self.h.main_queues) if external else set()
        queues = [q for q in self.known_queues() if q not in keep]
        if keep:
            self.purge(keep)
        exchanges = {
            str(q.exchange.name)
            for q in self.h.app.amqp.queues.values()
            if q.exchange is not None and self.h.ns.owns(str(q.exchange.name)) and q.name not in keep
        }
        if not external:  # else the user's workers still use them (their control, replies and events)
            control = self.h.ns.control_exchange
            exchanges |= {f"{control}.pidbox", f"reply.{control}.pidbox", self.h.ns.event_exchange}
        exchanges -= {str(self.h.app.amqp.queues[q].exchange.name) for q in keep if q in self.h.app.amqp.queues}
        delete_queues(self.h.app, [self.h.app.amqp.queues[name] for name in queues])
        with self.h.app.connection_for_write() as conn:
            for name in sorted(exchanges):
                channel: Any = conn.channel()
                try:
                    channel.exchange_delete(name)
                except (ChannelError, KeyError):
                    pass  # never declared (kombu's virtual transports raise KeyError for that)
                finally:
                    channel.close()

    def delete_results(self) -> None:
        """Delete what the run stored: on Redis every key under its namespace (results, kombu's
        bindings and reply lists), in a database the rows of its tasks. Embedded brokers go whole."""
        if self.h.broker.embedded or self.h.endpoints is None:
            return
        external = self.h.config.worker == "external"
        delete_run_keys(
            [self.h.endpoints.broker_url, self.h.endpoints.result_backend], self.h.ns.prefix, results_only=external
        )
        if self.h.backend_kind == "db":
            backend = self.h.app.backend
            for task_id in self.h.timeline.values("published", "task_id"):
                backend.forget(task_id)

    def purge(self, queues: Iterable[str] | None = None) -> int:
        """Discard waiting messages from this run's queues (``queues``: your names for them, or the
        run's; default: all); returns how many were discarded."""
        discarded = 0
        with self.h.app.connection_for_write() as conn:
            for queue in sorted(queues) if queues is not None else self.known_queues():
                if queue.startswith("csim-") and not self.h.ns.owns(queue):
                    raise HarnessError(f"refusing to purge {queue!r}: it does not belong to run {self.h.ns.run_id}")
                queue = self.h.ns.queue(queue)
                channel: Any = conn.channel()
                try:
                    discarded += int(channel.queue_purge(queue) or 0)
                except ChannelError:
                    pass  # never declared on this broker: nothing to purge
                finally:
                    channel.close()
        return discarded
