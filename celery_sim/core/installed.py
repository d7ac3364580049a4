"""Is everything a run imports installed? A missing module is named as such, with the install command.

Celery and kombu import a transport's client library only when a run first uses it (kombu 5.7's
Redis transport imports ``packaging``, which kombu declares only under its ``redis`` extra), so a
missing one surfaces deep inside a worker or an event receiver. :func:`check_installed` imports
them all up front; :func:`missing_module` finds an :class:`ImportError` behind any error.
"""

from __future__ import annotations

import importlib

from celery_sim.errors import MissingModuleError

__all__ = ["RUNTIME_MODULES", "check_installed", "missing_module"]

#: Modules a run imports lazily, and what needs each (celery-sim's own dependencies declare them all).
RUNTIME_MODULES: dict[str, str] = {
    "kombu.transport.redis": "kombu's Redis transport (the fakeredis and Redis brokers, the prefork scenarios)",
    "kombu.transport.pyamqp": "kombu's AMQP transport (RabbitMQ)",
    "celery.backends.redis": "Celery's Redis result backend",
    "fakeredis": "the embedded fakeredis broker",
    "sqlalchemy": "Celery's database result backend (db+...)",
}

#: Import name -> the distribution that brings it, where the two differ.
_DISTRIBUTIONS = {"yaml": "PyYAML", "lupa": "lupa", "sqlalchemy": "SQLAlchemy"}


def _error_for(exc: ImportError, needed_by: str) -> MissingModuleError:
    name = (exc.name or str(exc)).split(".", 1)[0]
    dist = _DISTRIBUTIONS.get(name, name)
    return MissingModuleError(
        f"Python module {name!r} is not installed; {needed_by} imports it ({type(exc).__name__}: {exc}). "
        f"Install it with: pip install {dist}  (or reinstall celery-sim, which declares it: pip install -e .)",
        module=name,
    )


def check_installed(modules: dict[str, str] | None = None) -> None:
    """Import each module of ``modules`` (default :data:`RUNTIME_MODULES`); raise :class:`MissingModuleError`."""
    for module, needed_by in (modules or RUNTIME_MODULES).items():
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise _error_for(exc, needed_by) from None


def missing_module(exc: BaseException, needed_by: str = "this run") -> MissingModuleError | None:
    """The :class:`MissingModuleError` behind ``exc`` (an ImportError it is, or was caused by), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, MissingModuleError):
            return current
        if isinstance(current, ImportError):
            return _error_for(current, needed_by)
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
