"""Demo Celery tasks and the scenarios that exercise them."""
