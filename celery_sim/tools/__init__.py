"""Commands built on the public engine: ``call`` and ``bench``."""
