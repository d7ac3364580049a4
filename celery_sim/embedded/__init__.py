"""In-process broker and result backend for a run that needs no infrastructure.

Each is registered with kombu or Celery under the scheme ``csim-memory`` when its module
(:mod:`.memory`, :mod:`.results`) is imported, not this package: the fakeredis server's process
imports this package and needs no Celery (importing it cost that process 70 ms of its start).
Each run picks its own virtual host / store name, so runs never share state.
"""

from __future__ import annotations

SCHEME = "csim-memory"
