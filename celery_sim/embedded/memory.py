"""kombu's memory transport, woken by events instead of a 1 s poll, with state per virtual host.

kombu's own memory transport keeps its queues in class attributes (every connection in the
process shares them, whatever the virtual host) and, when a queue is empty, sleeps
``polling_interval`` (1 s) before looking again. This subclass keeps kombu's message handling and
changes only those two things:

* queues and exchange bindings live in a :class:`VHostState` chosen by the URL's virtual host
  (``csim-memory://localhost/<run id>``), created on first use and removed by :func:`drop`;
* ``drain_events`` waits on the state's condition, which every put, ack and reject notifies (a
  worker whose prefetch window is full must wake when an ack frees a slot), and which
  :func:`interrupt` notifies so that a worker being stopped leaves its loop at once.
"""

from __future__ import annotations

import threading
from queue import Empty, Queue
from time import monotonic
from typing import Any, cast

from kombu.transport import TRANSPORT_ALIASES, memory, virtual

from celery_sim.embedded import SCHEME

__all__ = ["Channel", "Transport", "VHostState", "drop", "interrupt", "live_vhosts", "reopen", "state_for"]


class VHostState:
    """Queues, bindings and the wake-up condition of one virtual host."""

    def __init__(self, vhost: str) -> None:
        self.vhost = vhost
        self.broker_state = virtual.BrokerState()
        self.queues: dict[str, Queue[Any]] = {}
        self.cond = threading.Condition()
        self.version = 0  # bumped on every change a waiting consumer may care about
        self.epoch = 0  # bumped by interrupt(): waiters return instead of waiting on

    def notify(self, *, interrupting: bool = False) -> None:
        with self.cond:
            self.version += 1
            if interrupting:
                self.epoch += 1
            self.cond.notify_all()

    def message_count(self) -> int:
        return sum(q.qsize() for q in list(self.queues.values()))


_states: dict[str, VHostState] = {}
_states_lock = threading.Lock()


#: Virtual hosts whose run has ended: a late user (a worker thread still finishing) gets a
#: detached state instead of bringing the run's state back to life.
_closed: set[str] = set()


def state_for(vhost: str) -> VHostState:
    """The state of ``vhost``, created on first use (detached once the vhost was dropped)."""
    with _states_lock:
        if vhost in _closed:
            return VHostState(vhost)
        state = _states.get(vhost)
        if state is None:
            state = _states[vhost] = VHostState(vhost)
        return state


def reopen(vhost: str) -> None:
    """Let ``vhost`` hold state again (a new run with that name)."""
    with _states_lock:
        _closed.discard(vhost)


def drop(vhost: str) -> int:
    """Forget ``vhost``: its queues, bindings and messages. Returns the messages discarded."""
    with _states_lock:
        _closed.add(vhost)
        state = _states.pop(vhost, None)
    if state is None:
        return 0
    discarded = state.message_count()
    state.notify(interrupting=True)
    return discarded


def interrupt(vhost: str) -> None:
    """Wake every consumer waiting on ``vhost`` so that it re-checks whether it should stop."""
    with _states_lock:
        state = _states.get(vhost)
    if state is not None:
        state.notify(interrupting=True)


def live_vhosts() -> list[str]:
    """Virtual hosts that currently hold state (empty once every run has stopped)."""
    with _states_lock:
        return sorted(_states)


class Channel(memory.Channel):
    """A memory channel whose queues belong to its connection's virtual host."""

    @property
    def _vstate(self) -> VHostState:
        return cast("Transport", self.connection).vstate

    @property
    def queues(self) -> dict[str, Queue[Any]]:  # type: ignore[override]  # kombu: class attribute; here: per vhost
        return self._vstate.queues

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        super()._put(queue, message, **kwargs)
        self._vstate.notify()

    def _put_fanout(self, exchange: str, message: Any, routing_key: str | None = None, **kwargs: Any) -> None:
        super()._put_fanout(exchange, message, routing_key, **kwargs)
        self._vstate.notify()

    def basic_ack(self, *args: Any, **kwargs: Any) -> None:
        super().basic_ack(*args, **kwargs)
        self._vstate.notify()

    def basic_reject(self, *args: Any, **kwargs: Any) -> None:
        super().basic_reject(*args, **kwargs)
        self._vstate.notify()

    def _restore(self, message: Any) -> None:
        """Requeue ``message`` marked redelivered where consumers read it, as kombu's Redis does.

        kombu's virtual channel marks the stored payload's top level, which its ``Message`` never
        reads: ``delivery_info['redelivered']`` stayed unset, and a task that rejects with requeue
        unless redelivered looped for ever on the memory transport.
        """
        delivery_info = message.delivery_info
        payload = message.serializable()
        properties = dict(payload["properties"])
        properties["delivery_info"] = {**properties.get("delivery_info", {}), "redelivered": True}
        payload["properties"] = properties
        payload["headers"] = {**(payload.get("headers") or {}), "redelivered": True}
        payload["redelivered"] = True
        for queue in self._lookup(delivery_info["exchange"], delivery_info["routing_key"]):
            self._put(queue, payload)

    def close(self) -> None:
        # kombu's memory Channel.close also empties the process-wide queue table; here the queues
        # belong to the virtual host and outlive a channel, as they would on a real broker.
        virtual.Channel.close(self)


class Transport(memory.Transport):
    """kombu's memory transport with per-virtual-host state and event-driven draining."""

    Channel = Channel
    driver_type = "memory"
    driver_name = "csim-memory"

    def __init__(self, client: Any, **kwargs: Any) -> None:
        virtual.Transport.__init__(self, client, **kwargs)
        self.vstate = state_for(client.virtual_host or "/")
        self.state = self.vstate.broker_state

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:  # type: ignore[override]
        """Deliver one message, waiting for one until ``timeout`` (``socket.timeout`` then).

        Returns early with ``socket.timeout`` when :func:`interrupt` is called, so that a caller
        looping on its own condition (Celery's worker loop) re-checks it.
        """
        state = self.vstate
        cycle = self.cycle
        assert cycle is not None, "kombu creates the cycle in Transport.__init__"
        deadline = None if timeout is None else monotonic() + timeout
        epoch = state.epoch
        while True:
            seen = state.version
            try:
                cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                pass
            with state.cond:
                while state.version == seen:
                    remaining = None if deadline is None else deadline - monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError()
                    state.cond.wait(remaining)
                if state.epoch != epoch:
                    raise TimeoutError()


# Registered here, where it is defined (see the package's docstring).
TRANSPORT_ALIASES.setdefault(SCHEME, "celery_sim.embedded.memory:Transport")
