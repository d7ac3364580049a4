"""An in-process Celery result backend whose waits wake on writes instead of polling.

It is Celery's own ``KeyValueStoreBackend`` (the logic behind the Redis and cache backends:
result meta, groups, chords counted with ``incr``) over a dict. Only the two waiting loops
change: Celery's ``wait_for`` and ``get_many`` sleep ``interval`` (0.5 s) between reads; here they
wait on a condition that every write notifies, bounded by the same ``interval`` and ``timeout``.

Each backend URL names a store (``csim-memory://<run id>``); :func:`drop` forgets one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from time import monotonic
from typing import Any

from celery import states
from celery.app.backends import BACKEND_ALIASES
from celery.backends.base import KeyValueStoreBackend
from celery.exceptions import TimeoutError as CeleryTimeoutError
from kombu.utils.encoding import bytes_to_str

from celery_sim.embedded import SCHEME
from celery_sim.embedded.chords import RedisStyleChords

__all__ = ["MemoryResultBackend", "Store", "drop", "live_stores", "reopen", "store_for"]


class Store:
    """Keys and values of one run, with a condition notified on every write."""

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}
        self.cond = threading.Condition()
        self.version = 0

    def _changed(self) -> None:
        self.version += 1
        self.cond.notify_all()

    def set(self, key: Any, value: Any) -> None:
        with self.cond:
            self.data[key] = value
            self._changed()

    def delete(self, key: Any) -> None:
        with self.cond:
            self.data.pop(key, None)
            self._changed()

    def incr(self, key: Any) -> int:
        with self.cond:
            value = int(self.data.get(key) or 0) + 1
            self.data[key] = value
            self._changed()
            return value

    def wait_change(self, seen: int, timeout: float) -> None:
        """Return once the store changed after version ``seen``, or after ``timeout`` seconds."""
        with self.cond:
            self.cond.wait_for(lambda: self.version != seen, timeout)


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


#: Stores whose run has ended: a late writer (a worker thread still finishing its task) gets a
#: detached store instead of bringing the run's store back to life.
_closed: set[str] = set()


def store_for(name: str) -> Store:
    """The store ``name``, created on first use (detached once it was dropped)."""
    with _stores_lock:
        if name in _closed:
            return Store()
        store = _stores.get(name)
        if store is None:
            store = _stores[name] = Store()
        return store


def reopen(name: str) -> None:
    """Let store ``name`` hold results again (a new run with that name)."""
    with _stores_lock:
        _closed.discard(name)


def drop(name: str) -> None:
    with _stores_lock:
        _closed.add(name)
        _stores.pop(name, None)


def live_stores() -> list[str]:
    with _stores_lock:
        return sorted(_stores)


class MemoryResultBackend(RedisStyleChords, KeyValueStoreBackend):
    """Celery's key/value result backend over an in-process :class:`Store`, with chords kept as
    Celery's Redis backend keeps them (see :mod:`celery_sim.embedded.chords`)."""

    supports_native_join = True
    supports_autoexpire = False
    implements_incr = True

    def __init__(self, app: Any, url: str | None = None, **kwargs: Any) -> None:
        super().__init__(app, url=url, **kwargs)
        self.url = url or "csim-memory://"
        self.store_name = self.url.partition("://")[2].strip("/") or "default"
        self.store = store_for(self.store_name)

    def get(self, key: Any) -> Any:
        return self.store.data.get(key)

    def mget(self, keys: Iterable[Any]) -> list[Any]:
        data = self.store.data
        return [data.get(key) for key in keys]

    def set(self, key: Any, value: Any) -> None:
        self.store.set(key, value)

    def delete(self, key: Any) -> None:
        self.store.delete(key)

    def incr(self, key: Any) -> int:
        return self.store.incr(key)

    def wait_for(
        self,
        task_id: str,
        timeout: float | None = None,
        interval: float = 0.5,
        no_ack: bool = True,
        on_interval: Callable[[], Any] | None = None,
    ) -> dict[str, Any]:
        """Celery's ``wait_for``, waking on writes instead of sleeping ``interval``."""
        self._ensure_not_eager()  # type: ignore[attr-defined]  # Celery internal, not in the stubs
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            seen = self.store.version
            meta: dict[str, Any] = self.get_task_meta(task_id)
            # Before the ready check, as Redis's result consumer calls it after each message:
            # a caller whose chord header failed gets that error (the parent's) rather than the
            # callback's ChordError, whichever was stored first.
            if on_interval:
                on_interval()
            if meta["status"] in states.READY_STATES:
                return meta
            nap = interval if deadline is None else min(interval, deadline - monotonic())
            if nap <= 0:
                raise CeleryTimeoutError("The operation timed out.")
            self.store.wait_change(seen, nap)

    def get_many(
        self,
        task_ids: Iterable[str],
        timeout: float | None = None,
        interval: float = 0.5,
        no_ack: bool = True,
        on_message: Callable[[Any], Any] | None = None,
        on_interval: Callable[[], Any] | None = None,
        max_iterations: int | None = None,
        READY_STATES: frozenset[str] = states.READY_STATES,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Celery's ``get_many``, waking on writes instead of sleeping ``interval``."""
        interval = 0.5 if interval is None else interval
        pending = {bytes_to_str(task_id) for task_id in task_ids}
        deadline = None if timeout is None else monotonic() + timeout
        iterations = 0
        while pending:
            seen = self.store.version
            keys = sorted(pending)
            values = self.mget([self.get_key_for_task(k) for k in keys])
            ready = self._mget_to_results(values, keys, READY_STATES)  # type: ignore[attr-defined]
            self._cache.update(ready)  # type: ignore[attr-defined]
            for key, meta in ready.items():
                pending.discard(bytes_to_str(key))
                if on_message is not None:
                    on_message(meta)
                yield bytes_to_str(key), meta
            if not pending:
                return
            nap = interval if deadline is None else min(interval, deadline - monotonic())
            if nap <= 0:
                raise CeleryTimeoutError(f"Operation timed out ({timeout})")
            if on_interval:
                on_interval()
            self.store.wait_change(seen, nap)
            iterations += 1
            if max_iterations and iterations >= max_iterations:
                return


# Registered here, where it is defined (see the package's docstring).
BACKEND_ALIASES.setdefault(SCHEME, "celery_sim.embedded.results:MemoryResultBackend")
