"""The broker demo: what depends on the transport (priority, acknowledgements, visibility, outages)."""
