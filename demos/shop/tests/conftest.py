"""The shop's test set-up: which app celery_sim's ``csim`` fixture runs."""

from __future__ import annotations

import pytest
from celery import Celery


@pytest.fixture
def csim_app() -> Celery:
    from demos.shop.celery_app import app

    return app
