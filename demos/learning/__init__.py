"""The learning guide's app: basic, advanced (canvas, retry strategies) and real-world tasks, and a beat schedule.

Start its worker for real with ``celery -A demos.learning worker -Q learning,email,media,data``
and its scheduler with ``celery -A demos.learning beat`` (``LEARNING_BROKER_URL`` and
``LEARNING_RESULT_BACKEND`` say where; Redis on this machine by default).
"""

from demos.learning.celery_app import app

__all__ = ["app"]
