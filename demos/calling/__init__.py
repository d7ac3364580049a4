"""Calling a task: plain call, apply, delay, apply_async, send_task, and the `celery call` command."""
