"""In-process broker and result backend for a run that needs no infrastructure.

Both are registered with kombu and Celery under the scheme ``csim-memory`` when this package is
imported; each run picks its own virtual host / store name, so runs never share state.
"""

from __future__ import annotations

from celery.app.backends import BACKEND_ALIASES
from kombu.transport import TRANSPORT_ALIASES

SCHEME = "csim-memory"

TRANSPORT_ALIASES.setdefault(SCHEME, "celery_sim.embedded.memory:Transport")
BACKEND_ALIASES.setdefault(SCHEME, "celery_sim.embedded.results:MemoryResultBackend")
