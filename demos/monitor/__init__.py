"""Seeing inside a run: Celery's own task events, and remote control (inspect, control) observed to take effect."""
