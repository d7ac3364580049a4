"""The "model": deterministic text in chunks (the same prompt and model always give the same text)."""

from __future__ import annotations

import hashlib
import re

__all__ = ["CHUNKS", "MODELS", "chunks", "network_failures"]

MODELS = ("demo-small", "demo-large")
CHUNKS = 5
_WORDS = [
    "celery",
    "tasks",
    "run",
    "on",
    "workers",
    "while",
    "the",
    "api",
    "answers",
    "at",
    "once",
    "and",
    "the",
    "database",
    "keeps",
    "every",
    "row",
]
_FAILS = re.compile(r"\[network-error x(\d+)\]")


def chunks(prompt: str, model: str) -> list[str]:
    """The text for ``prompt``, in CHUNKS chunks; ValueError for a model not in MODELS or an empty prompt."""
    if model not in MODELS:
        raise ValueError(f"unsupported model {model!r}: choose one of {', '.join(MODELS)}")
    if not prompt.strip():
        raise ValueError("the prompt is empty")
    digest = hashlib.sha256(f"{model}\0{prompt}".encode()).digest()
    size = 4 if model == "demo-small" else 8
    return [" ".join(_WORDS[b % len(_WORDS)] for b in digest[i * size : (i + 1) * size]) for i in range(CHUNKS)]


def network_failures(prompt: str) -> int:
    """How many first attempts fail with a network error: ``[network-error xN]`` in the prompt."""
    found = _FAILS.search(prompt)
    return int(found.group(1)) if found else 0
