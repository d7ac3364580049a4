"""Scenarios: the ``@scenario`` registry and context, the catalog, the runner and the broker matrix."""
