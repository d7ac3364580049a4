"""The shop's Celery app, configured as for production: the harness lends it a broker for a test.

Start its workers for real with ``celery -A demos.shop.celery_app worker -Q shop,payments,emails``
(``SHOP_BROKER_URL`` and ``SHOP_RESULT_BACKEND`` say where; Redis on this machine by default).
"""

from __future__ import annotations

import os

from celery import Celery

app = Celery(
    "shop",
    broker=os.environ.get("SHOP_BROKER_URL", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("SHOP_RESULT_BACKEND", "redis://127.0.0.1:6379/0"),
    include=["demos.shop.tasks"],
)
app.conf.update(
    task_default_queue="shop",
    task_routes={
        "shop.charge": {"queue": "payments"},
        "shop.send_receipt": {"queue": "emails"},
        "shop.nightly_report": {"queue": "reports"},  # served by a separate reporting worker
    },
    task_acks_late=True,
)
