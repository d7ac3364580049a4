"""The task-sending guide's app: tasks registered by explicit names, sent by name (``send_task``).

Start its worker for real with
``celery -A demos.sending worker -Q secretflow_queue,default,web_queue`` (``SENDING_BROKER_URL``
and ``SENDING_RESULT_BACKEND`` say where; Redis on this machine by default), then send with
``python -m celery_sim send hello --real-broker redis://127.0.0.1:6379/0 --external``.
"""

from demos.sending.celery_app import app

__all__ = ["app"]
