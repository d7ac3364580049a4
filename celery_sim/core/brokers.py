"""Which broker and result backend a run uses: a table of names, or a real broker's URL."""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from celery_sim.errors import BrokerError

__all__ = [
    "BACKEND_SCHEMES",
    "BROKERS",
    "DEFAULT_AMQP_URL",
    "DEFAULT_REDIS_URL",
    "URL_SCHEMES",
    "Broker",
    "Endpoints",
    "backend_kind",
    "mask_url",
    "resolve_broker",
    "validate_result_backend",
]

#: URL schemes accepted as a real broker.
URL_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")
#: The Redis of this machine (the matrix includes it; RabbitMQ runs keep results there by default).
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: The RabbitMQ of this machine (the matrix and the bench include it).
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
#: URL schemes accepted as a result backend with a real broker (db+ takes any SQLAlchemy URL).
BACKEND_SCHEMES = ("redis", "rediss", "rpc", "db+")


def backend_kind(url: object) -> str | None:
    """ "rpc" or "db" for a result backend URL of those kinds (scenarios may declare skips for them), else None."""
    text = str(url or "")
    if text.startswith("rpc"):
        return "rpc"
    return "db" if text.startswith("db+") else None


_CREDENTIALS = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/@\s]*:)(?P<password>[^@\s]+)(?P<at>@)")


def mask_url(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (safe to print, log and store)."""
    return _CREDENTIALS.sub(r"\g<head>***\g<at>", text)


@dataclass(frozen=True)
class Endpoints:
    """What one run connects to; ``wake`` and ``close`` belong to the broker's lifecycle."""

    broker_url: str
    result_backend: str
    wake: Callable[[], None]
    close: Callable[[], None]


class Broker(ABC):
    """A kind of broker: knows how to open endpoints for one run."""

    name: str
    summary: str
    #: True when the broker lives inside this process (nothing to install, nothing shared).
    embedded: bool

    @abstractmethod
    def open(self, run_id: str) -> Endpoints:
        """Endpoints private to ``run_id``, ready to connect to."""

    def labels(self) -> tuple[str, str]:
        """The broker and the result backend as they may be shown to a user (no password)."""
        return self.name, f"{self.name} (embedded)"

    def preflight(self, timeout: float = 3.0) -> None:  # noqa: B027  # embedded brokers need no check
        """Raise :class:`BrokerError` within about ``timeout`` seconds if the broker cannot be reached."""


class MemoryBroker(Broker):
    name = "memory"
    summary = "kombu's memory transport in this process, event-driven, one virtual host per run (default)"
    embedded = True

    def open(self, run_id: str) -> Endpoints:
        from celery_sim.embedded import SCHEME, memory, results

        memory.reopen(run_id)
        results.reopen(run_id)

        def close() -> None:
            memory.drop(run_id)
            results.drop(run_id)

        return Endpoints(
            broker_url=f"{SCHEME}://localhost/{run_id}",
            result_backend=f"{SCHEME}://{run_id}",
            wake=lambda: memory.interrupt(run_id),
            close=close,
        )


class FakeRedisBroker(Broker):
    name = "fakeredis"
    summary = "kombu's Redis transport and Celery's Redis backend against fakeredis, over a private Unix socket"
    embedded = True

    def open(self, run_id: str) -> Endpoints:
        from celery_sim.embedded.fakeredis_server import FakeRedisServer

        server = FakeRedisServer.start(run_id)
        return Endpoints(
            broker_url=server.url,
            result_backend=server.backend_url,
            wake=lambda: None,
            close=server.stop,
        )


class UrlBroker(Broker):
    """A real broker reached by URL; results go to Redis unless ``result_backend`` says otherwise."""

    embedded = False
    summary = "a real broker (redis://, amqp://); results in Redis by default"

    def __init__(self, url: str, result_backend: str | None = None) -> None:
        self.url = url
        scheme = urlsplit(url).scheme
        self.name = "redis" if scheme.startswith("redis") else "amqp"
        self.result_backend = result_backend or (url if self.name == "redis" else DEFAULT_REDIS_URL)

    def open(self, run_id: str) -> Endpoints:
        return Endpoints(broker_url=self.url, result_backend=self.result_backend, wake=lambda: None, close=lambda: None)

    def labels(self) -> tuple[str, str]:
        return mask_url(self.url), mask_url(self.result_backend)

    def preflight(self, timeout: float = 3.0) -> None:
        from kombu import Connection

        for role, url in (("broker", self.url), ("result backend", self.result_backend)):
            try:
                if url.startswith("db+"):
                    _check_database(url)
                    continue
                if not url.startswith(URL_SCHEMES):
                    continue  # rpc://: results travel through the broker, checked above
                with Connection(url, connect_timeout=timeout, transport_options={"max_retries": 0}) as conn:
                    conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=math.ceil(timeout))
            except ImportError as exc:  # a missing client library, not an unreachable broker
                from celery_sim.core.installed import missing_module

                raise (missing_module(exc, f"the {role} at {mask_url(url)}") or exc) from None
            except Exception as exc:
                raise BrokerError(
                    f"cannot reach the {role} at {mask_url(url)}: {mask_url(str(exc)) or type(exc).__name__}. "
                    "Is it running, and are host, port and credentials right?"
                ) from None


def validate_result_backend(url: str) -> None:
    """Raise :class:`BrokerError` unless ``url`` is a result backend URL this tool runs with."""
    scheme = urlsplit(url).scheme
    if "://" not in url or not (scheme in BACKEND_SCHEMES or scheme.startswith("db+")):
        raise BrokerError(
            f"result backend {mask_url(url)!r} is not supported here; use redis://HOST:PORT/DB, rpc://, "
            "or db+sqlite:///PATH (any SQLAlchemy URL after db+)"
        )
    if scheme.startswith("db+"):
        try:
            import sqlalchemy  # noqa: F401  # Celery's database backend needs it
        except ImportError:
            raise BrokerError(f"result backend {mask_url(url)!r} needs SQLAlchemy: pip install sqlalchemy") from None


def _check_database(url: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url.removeprefix("db+"))
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


#: Brokers chosen by name with ``--broker``.
BROKERS: dict[str, Callable[[], Broker]] = {
    "memory": MemoryBroker,
    "fakeredis": FakeRedisBroker,
}


def resolve_broker(value: str, result_backend: str | None = None) -> Broker:
    """The broker named by ``value``: a name from :data:`BROKERS` or a URL with a scheme from :data:`URL_SCHEMES`."""
    if value in BROKERS:
        return BROKERS[value]()
    if "://" not in value:
        import difflib

        close = difflib.get_close_matches(value, list(BROKERS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise BrokerError(
            f"unknown broker {value!r}.{hint} Choose one of: {', '.join(BROKERS)}, "
            f"or give a URL ({', '.join(s + '://' for s in URL_SCHEMES[::2])}...)."
        )
    parts = urlsplit(value)
    if parts.scheme not in URL_SCHEMES:
        raise BrokerError(
            f"broker URL {mask_url(value)!r} has scheme {parts.scheme!r}; "
            f"supported schemes: {', '.join(URL_SCHEMES)} (or a name: {', '.join(BROKERS)})."
        )
    try:
        port = parts.port
    except ValueError:
        raise BrokerError(
            f"broker URL {mask_url(value)!r} has a malformed port; expected e.g. redis://localhost:6379/0"
        ) from None
    if not parts.hostname:
        raise BrokerError(f"broker URL {mask_url(value)!r} names no host; expected e.g. {parts.scheme}://localhost/")
    del port
    return UrlBroker(value, result_backend)
