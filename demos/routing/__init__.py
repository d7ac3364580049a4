"""Routing: task_routes, named queues, workers consuming a subset, and a queue nobody consumes."""
