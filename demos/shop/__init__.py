"""An example of a user's own Celery app (a small shop) and its tests, written with celery_sim's
pytest plugin: routing, an autoretrying task, a chord, a queue nobody consumes in the tests."""
