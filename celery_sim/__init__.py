"""celery_sim: real Celery, runnable and provable in one command."""
