"""Builds a run's Celery app: the same app in the harness and in a worker process it starts."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from celery_sim.core.namespace import Namespace
from celery_sim.errors import HarnessError

__all__ = ["ENV_SPEC", "AppSpec", "Configure", "build_app", "configure_path", "load_configure"]

Configure = Callable[[Celery, Namespace], None]

#: Environment variable carrying a run's AppSpec (JSON) to a worker process.
ENV_SPEC = "CSIM_APP_SPEC"


def configure_path(configure: Configure) -> str:
    """``module:function`` of ``configure``, so that another process can import it."""
    module, name = getattr(configure, "__module__", None), getattr(configure, "__qualname__", "")
    if not module or "<" in name or module == "__main__":
        raise HarnessError(
            f"configure={configure!r} cannot be loaded by a worker process: "
            "give a function defined at the top level of an importable module"
        )
    return f"{module}:{name}"


def load_configure(path: str) -> Configure:
    module, _, name = path.partition(":")
    found: Configure = getattr(importlib.import_module(module), name)
    return found


@dataclass(frozen=True)
class AppSpec:
    """Everything that defines a run's app; :meth:`to_json` carries it to a worker process."""

    broker_url: str
    result_backend: str
    run_id: str
    configure: Configure | None = None
    time_scale: float = 1.0
    extra_conf: dict[str, Any] = field(default_factory=dict)
    #: ``module:attr`` of the user's app (or its factory) the worker runs; None: the built app.
    app_path: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "broker_url": self.broker_url,
                "result_backend": self.result_backend,
                "run_id": self.run_id,
                "configure": configure_path(self.configure) if self.configure else None,
                "time_scale": self.time_scale,
                "extra_conf": self.extra_conf,
                "app_path": self.app_path,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> AppSpec:
        data = json.loads(text)
        configure = load_configure(data["configure"]) if data.get("configure") else None
        return cls(
            data["broker_url"],
            data["result_backend"],
            data["run_id"],
            configure,
            float(data.get("time_scale", 1.0)),
            dict(data.get("extra_conf") or {}),
            data.get("app_path"),
        )


def build_app(spec: AppSpec, app_cls: type[Celery] = Celery) -> Celery:
    """A fresh, finalized app for ``spec`` (default queue ``default``, JSON only), set up by its
    ``configure`` and ``extra_conf`` before it is finalized, as task options must be.

    What every run's app gets (its broker, namespaced exchanges, result key prefix, time scale)
    is overlaid when the run lends it (:class:`~celery_sim.core.adopt.Adoption`).
    """
    ns = Namespace(spec.run_id)
    app = app_cls(ns.prefix, broker=spec.broker_url, backend=spec.result_backend, set_as_current=False, fixups=[])
    app.conf.update(
        task_default_queue=ns.queue("default"),
        accept_content=["json"],
        result_accept_content=["json"],
        task_serializer="json",
        result_serializer="json",
        **spec.extra_conf,
    )
    if spec.configure is not None:
        spec.configure(app, ns)
    app.finalize(auto=True)
    return app
