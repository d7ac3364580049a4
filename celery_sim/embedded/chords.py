"""Chord bookkeeping for the embedded result backend, as Celery's Redis backend keeps it.

Celery's ``KeyValueStoreBackend.on_chord_part_return`` (what the embedded backend inherited)
counts header results and, once the count reaches the header's length, *joins the header inside
the worker*: nested groups are awaited with ``get()`` and no timeout, so a worker with one slot
waits for tasks only it could run (measured: a chord whose header holds chains ending in groups
never completed at concurrency 1, and the worker never became idle again). Celery's Redis backend
instead keeps each part's result in the group's own list (``.j``), counts the leaves Celery
announced with ``set_chord_size`` (``.s``, plus ``.t`` for tasks added later), claims the
completion once (``.c``, and ``.d`` against duplicates), and only then reads the stored results.

:class:`RedisStyleChords` keeps the same keys in the embedded store, under the store's lock (what
the Redis backend's Lua script makes atomic), and calls the same Celery code at the same points:
``set_chord_size`` from Celery's chord, ``GroupResult.restore`` + join for a complex header (every
leaf has ended by then, so it never waits), ``RedisBackend._unpack_chord_result`` to turn a failed
part into Celery's ``ChordError``, ``chord_error_from_stack`` to fail the callback, and
``callback.delay`` to run it.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from celery.canvas import maybe_signature
from celery.exceptions import ChordError
from celery.result import GroupResult, allow_join_result
from celery.utils.functional import _regen  # type: ignore[attr-defined]  # not in the stubs

if TYPE_CHECKING:
    from celery_sim.embedded.results import Store

__all__ = ["RedisStyleChords"]

log = logging.getLogger(__name__)


class RedisStyleChords:
    """Mixin for a ``KeyValueStoreBackend`` over a :class:`~celery_sim.embedded.results.Store`."""

    store: Store
    app: Any

    def set_chord_size(self, group_id: str, chord_size: int) -> None:
        backend: Any = self
        with self.store.cond:
            # Reapplying a frozen chord reuses its group id, but is a new run: its claim goes (as on
            # Redis). Its parts stay: Celery sets the size just before sending the last header task,
            # after the others, which may have returned already.
            self.store.data.pop(backend.get_key_for_group(group_id, ".c"), None)
            self.store.data[backend.get_key_for_group(group_id, ".s")] = int(chord_size)
            self.store._changed()

    def add_to_chord(self, group_id: str, result: Any) -> None:
        backend: Any = self
        self.store.incr(backend.get_key_for_group(group_id, ".t"))

    def apply_chord(self, header_result_args: Any, body: Any, **kwargs: Any) -> None:
        """Save a header that holds groups, so that its structure is restored at the end (as on Redis)."""
        backend: Any = self
        if isinstance(header_result_args[1], _regen):
            return  # a lazy header (Celery's generator of results): nothing to save, as on Redis
        header_result = self.app.GroupResult(*header_result_args)
        if any(isinstance(child, GroupResult) for child in header_result.results):
            self.store.set(
                backend.get_key_for_group(header_result.id), backend.encode({"result": header_result.as_tuple()})
            )

    # KeyValueStoreBackend.__init__ replaces apply_chord with _apply_chord_incr (which always
    # saves the header) on backends with a counter: the Redis backend's rule must win there too.
    _apply_chord_incr = apply_chord

    def _claim_part(self, gid: str, tid: str, index: float, encoded: Any) -> tuple[int, int, int | None, bool]:
        """Store one part's result; returns (parts stored, parts added later, chord size, claimed)."""
        backend: Any = self
        keys = {suffix: backend.get_key_for_group(gid, suffix) for suffix in (".j", ".t", ".s", ".d", ".c")}
        data = self.store.data
        with self.store.cond:
            if data.get(keys[".c"]) == "done":
                return -1, 0, None, False
            done: set[str] = data.setdefault(keys[".d"], set())
            parts: list[tuple[float, int, Any]] = data.setdefault(keys[".j"], [])
            member = f"{tid}:{index}"
            if member not in done:
                done.add(member)
                parts.append((index, len(parts), encoded))
            added, size = int(data.get(keys[".t"]) or 0), data.get(keys[".s"])
            claimed = size is not None and len(parts) == int(size) + added and keys[".c"] not in data
            if claimed:
                data[keys[".c"]] = "claimed"
            self.store._changed()
            return len(parts), added, size, claimed

    def _finish(self, gid: str, *, keep_results: bool) -> None:
        backend: Any = self
        with self.store.cond:
            for suffix in (".j", ".t", ".d") if not keep_results else ():
                self.store.data.pop(backend.get_key_for_group(gid, suffix), None)
            self.store.data.pop(backend.get_key_for_group(gid, ".s"), None)
            if not keep_results:
                self.store.data[backend.get_key_for_group(gid, ".c")] = "done"
            self.store._changed()

    def on_chord_part_return(self, request: Any, state: str, result: Any, propagate: Any = None, **kwargs: Any) -> None:
        backend: Any = self
        app = self.app
        tid, gid, group_index = request.id, request.group, request.group_index
        if not gid or not tid:
            return
        index = math.inf if group_index is None else float(group_index)
        encoded = backend.encode([1, tid, state, backend.encode_result(result, state)])
        ready, _added, size, claimed = self._claim_part(gid, tid, index, encoded)
        if ready == -1 or not size or not claimed:
            return
        callback: Any = maybe_signature(request.chord, app=app)
        try:
            header_result: Any = GroupResult.restore(gid, app=app)
            if header_result is not None:
                # A header holding groups: join it for its structure; every leaf has ended.
                header_result.on_ready()
                with allow_join_result():
                    values = header_result.join_native(timeout=app.conf.result_chord_join_timeout, propagate=True)
            else:
                with self.store.cond:
                    parts = sorted(self.store.data.get(backend.get_key_for_group(gid, ".j"), []))
                # Imported here: the Redis backend brings redis-py, kombu's Redis transport and
                # packaging, ~10 ms of a memory harness's first start that no other path needs.
                from celery.backends.redis import RedisBackend

                unpack: Any = RedisBackend._unpack_chord_result  # type: ignore[attr-defined]  # not in the stubs
                values = [unpack(backend, encoded, backend.decode) for _, _, encoded in parts]
        except ChordError as exc:
            log.exception("Chord %r raised: %r", gid, exc)
            self._finish(gid, keep_results=True)
            backend.chord_error_from_stack(callback, exc)
            return
        except Exception as exc:
            log.exception("Chord %r raised: %r", gid, exc)
            self._finish(gid, keep_results=True)
            backend.chord_error_from_stack(callback, ChordError(f"Join error: {exc!r}"))
            return
        try:
            app.amqp._retry_publish(callback.delay, values)
        except Exception as exc:
            log.exception("Chord callback for %r raised: %r", gid, exc)
            backend.chord_error_from_stack(callback, ChordError(f"Callback error: {exc!r}"))
        finally:
            self._finish(gid, keep_results=False)
