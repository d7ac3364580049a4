"""What runs leave on a real broker, found by their namespace (``csim-<run id>.``) and removed.

A run deletes its queues and exchanges itself (see :meth:`Harness.stop`); on Redis it also owns
keys no AMQP call removes: its result keys (``csim-<id>.celery-task-meta-*``, under the result
backend's ``global_keyprefix``), kombu's binding tables and pidbox reply lists, and its members of
kombu's shared ``_kombu.binding_deadlines`` set. :func:`delete_run_keys` removes those at stop;
:func:`find_leftovers` and :func:`remove` are ``python -m celery_sim clean``, for what a killed run
left behind. Only celery_sim's own names are ever touched.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from celery_sim.core.brokers import URL_SCHEMES, mask_url
from celery_sim.errors import BrokerError

__all__ = ["Leftover", "clean", "delete_run_keys", "find_leftovers", "remove"]

#: A celery_sim name: ``csim-<run id>.`` somewhere in it (run ids: see the CLI's --run-id).
RUN_NAME = re.compile(r"csim-(?P<run>[A-Za-z0-9_-]{1,32})\.")
#: kombu's sorted set of binding-table deadlines, shared by every user of a Redis database.
BINDING_DEADLINES = "_kombu.binding_deadlines"


def _is_redis(url: str) -> bool:
    return urlsplit(url).scheme in ("redis", "rediss")


def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)


def delete_run_keys(urls: Iterable[str], prefix: str, *, results_only: bool = False) -> int:
    """Delete the Redis keys of the run named ``prefix`` (``csim-<id>``) at each Redis URL of ``urls``.

    ``results_only`` (a run whose queues the user's workers still consume): only its results and
    its own reply lists, not the bindings those workers need. Returns how many keys went.
    """
    patterns = [f"{prefix}.celery-*", f"*.reply.{prefix}.control.pidbox"] if results_only else [f"*{prefix}.*"]
    deleted = 0
    for url in dict.fromkeys(u for u in urls if _is_redis(u)):
        client = _redis(url)
        try:
            for pattern in patterns:
                deleted += _delete_keys(client, client.scan_iter(match=pattern, count=1000))
            if not results_only:
                members = [m for m in client.zrange(BINDING_DEADLINES, 0, -1) if f"{prefix}.".encode() in m]
                if members:
                    client.zrem(BINDING_DEADLINES, *members)
        finally:
            client.close()
    return deleted


def _delete_keys(client: Any, keys: Iterator[bytes], batch: int = 500) -> int:
    deleted, pending = 0, []
    for key in keys:
        pending.append(key)
        if len(pending) >= batch:
            deleted += int(client.delete(*pending))
            pending = []
    if pending:
        deleted += int(client.delete(*pending))
    return deleted


@dataclass(frozen=True)
class Leftover:
    """One thing a run left: a Redis key or binding deadline, a RabbitMQ queue or exchange."""

    run_id: str
    kind: str
    name: str
    #: The broker, as it may be shown (no password).
    where: str
    #: Seconds since the key was last used (Redis only; RabbitMQ keeps no age).
    idle_s: float | None = None
    #: A queue some consumer still reads: its run is alive, and nothing of it is removed.
    in_use: bool = False


def find_leftovers(url: str, *, run_id: str | None = None, older_than: float | None = None) -> list[Leftover]:
    """celery_sim's names at ``url`` (Redis or RabbitMQ) that belong to no live run.

    A run is left out when any of its queues has a consumer, or (Redis) when any of its keys was
    used within ``older_than`` seconds. ``run_id`` keeps only that run's names.
    """
    found = _redis_leftovers(url) if _is_redis(url) else _rabbit_leftovers(url)
    if run_id is not None:
        found = [item for item in found if item.run_id == run_id]
    runs: dict[str, list[Leftover]] = {}
    for item in found:
        runs.setdefault(item.run_id, []).append(item)
    stale = []
    for items in runs.values():
        if any(item.in_use for item in items):
            continue
        if older_than is not None and any(item.idle_s is not None and item.idle_s < older_than for item in items):
            continue
        stale.extend(items)
    return stale


def _redis_leftovers(url: str) -> list[Leftover]:
    client = _redis(url)
    where = mask_url(url)
    try:
        found = []
        for key in client.scan_iter(match="*csim-*", count=1000):
            match = RUN_NAME.search(key.decode(errors="replace"))
            if match:
                idle = client.object("idletime", key)
                found.append(Leftover(match["run"], "key", key.decode(errors="replace"), where, float(idle or 0)))
        for member in client.zrange(BINDING_DEADLINES, 0, -1):
            match = RUN_NAME.search(member.decode(errors="replace"))
            if match:
                found.append(Leftover(match["run"], "binding deadline", member.decode(errors="replace"), where))
        return found
    except Exception as exc:  # the CLI turns this into exit 2
        raise BrokerError(f"cannot list the keys at {where}: {exc!r}") from None
    finally:
        client.close()


def _vhost(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def _rabbit_leftovers(url: str) -> list[Leftover]:
    """Queues and exchanges named ``csim-<id>.*`` on RabbitMQ, listed with ``rabbitmqctl``.

    AMQP itself cannot list queues or exchanges; rabbitmqctl answers for a broker on this machine.
    """
    host = urlsplit(url).hostname or ""
    if host not in ("localhost", "127.0.0.1", "::1") or shutil.which("rabbitmqctl") is None:
        raise BrokerError(
            f"cannot list the queues and exchanges at {mask_url(url)}: AMQP has no listing, and rabbitmqctl "
            "is needed on the broker's machine. Run `python -m celery_sim clean` there (with a localhost URL)."
        )
    vhost = _vhost(url)
    queues = _rabbitmqctl("list_queues", "-p", vhost, "name", "consumers")
    exchanges = _rabbitmqctl("list_exchanges", "-p", vhost, "name")
    where = mask_url(url)
    found = []
    for row in queues:
        match = RUN_NAME.search(str(row["name"]))
        if match:
            found.append(Leftover(match["run"], "queue", row["name"], where, in_use=int(row["consumers"] or 0) > 0))
    for row in exchanges:
        match = RUN_NAME.search(str(row["name"]))
        if match:
            found.append(Leftover(match["run"], "exchange", row["name"], where))
    return found


def _rabbitmqctl(*args: str) -> list[dict[str, Any]]:
    completed = subprocess.run(
        ["rabbitmqctl", "-q", *args, "--formatter", "json"], capture_output=True, text=True, timeout=60, check=False
    )
    if completed.returncode != 0:
        raise BrokerError(f"rabbitmqctl {' '.join(args)} failed: {completed.stderr.strip() or completed.stdout}")
    rows: list[dict[str, Any]] = json.loads(completed.stdout or "[]")
    return rows


def remove(url: str, leftovers: Iterable[Leftover]) -> int:
    """Delete ``leftovers`` (found at ``url``); returns how many went."""
    items = list(leftovers)
    if _is_redis(url):
        client = _redis(url)
        try:
            count = _delete_keys(client, iter([i.name.encode() for i in items if i.kind == "key"]))
            members = [i.name for i in items if i.kind == "binding deadline"]
            if members:
                count += int(client.zrem(BINDING_DEADLINES, *members))
            return count
        finally:
            client.close()
    from kombu import Connection

    with Connection(url, connect_timeout=3) as conn:
        channel: Any = conn.channel()
        try:
            for item in items:
                if item.kind == "queue":
                    channel.queue_delete(item.name)
                elif item.kind == "exchange":
                    channel.exchange_delete(item.name)
        finally:
            channel.close()
    return len(items)


def clean(urls: Iterable[str], *, run_id: str | None, older_than: float | None, dry_run: bool) -> list[Leftover]:
    """Find (and unless ``dry_run``, remove) what runs left at each broker or Redis backend of ``urls``."""
    found: list[Leftover] = []
    for url in dict.fromkeys(urls):
        if urlsplit(url).scheme not in URL_SCHEMES:
            continue  # rpc://, db+...: no celery_sim names to list there
        here = find_leftovers(url, run_id=run_id, older_than=older_than)
        if not dry_run:
            remove(url, here)
        found.extend(here)
    return found
