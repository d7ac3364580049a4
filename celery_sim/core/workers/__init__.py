"""Where a run's tasks execute: an embedded thread worker, a ``celery worker`` process, its bootstrap."""

__all__ = ["WORKER_KINDS"]

#: Where the main worker runs: embedded thread, a ``celery worker`` process the harness starts, or
#: workers the user started (anywhere) for this run's namespace.
WORKER_KINDS = ("thread", "process", "external")
