"""A small HTTP client for the runner's API (the standard library's, over real HTTP), every call bounded."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

__all__ = ["call"]


def call(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    """``(status, parsed JSON body)`` of one request; HTTP errors are answers too, not exceptions."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
