"""The engine: a run's broker, the app it lends, its workers, draining and clean-up.

Imports Celery, kombu, :mod:`celery_sim.observe` and :mod:`celery_sim.embedded`; never the
scenarios, the reports or the demos.
"""
