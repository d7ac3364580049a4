"""The Async AI Task Runner guide's system: FastAPI + SQLAlchemy + Celery.

Run it with ``python -m celery_sim serve ai_runner`` (an embedded broker and worker beside the
API), or as the guide deploys it: ``celery -A demos.ai_runner worker -Q ai_processing,demo_tasks,urgent``
and the API from ``demos.ai_runner.api:create_app`` (``AI_RUNNER_BROKER_URL``,
``AI_RUNNER_RESULT_BACKEND`` and ``AI_RUNNER_DATABASE_URL`` say where; Redis and a SQLite file by default).
"""

from demos.ai_runner.celery_app import app

__all__ = ["app"]
