"""Async tasks: what Celery 5.7 does with ``async def`` (it cannot run them), and a pattern that works.

Start its worker for real with ``celery -A demos.async_tasks worker -Q async --pool threads -c 2``
(``ASYNC_BROKER_URL`` and ``ASYNC_RESULT_BACKEND`` say where; Redis on this machine by default).
"""

from demos.async_tasks.celery_app import app

__all__ = ["app"]
