"""Where a run's tasks execute: an embedded thread worker, a ``celery worker`` process, its bootstrap."""
