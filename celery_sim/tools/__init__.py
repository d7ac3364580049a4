"""Commands built on the engine: ``call``, ``doctor`` and ``bench``."""
