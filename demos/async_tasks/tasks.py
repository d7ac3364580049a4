"""The guide's ``async def`` task (which Celery 5.7 cannot run) and the working pattern.

``stream_words`` does real async I/O: it fetches its chunks concurrently over TCP from the
caller's chunk server, and publishes each one on Redis pub/sub (``redis.asyncio``) as it arrives,
so that the caller prints them while the task still runs.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from demos.async_tasks.celery_app import app
from demos.async_tasks.loops import run


@app.task(name="demos.async_tasks.native")
async def native(marker: str) -> str:
    """As the guide writes it. Celery calls it, gets a coroutine, and never awaits it."""
    await asyncio.sleep(0)
    Path(marker).write_text("the body ran")
    return "done"


async def _fetch(host: str, port: int, word: str) -> str:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(word.encode() + b"\n")
        await writer.drain()
        return (await reader.readline()).decode().strip()
    finally:
        writer.close()
        await writer.wait_closed()


async def _stream(words: list[str], server: tuple[str, int], redis_url: str, channel: str) -> list[str]:
    client = aioredis.from_url(redis_url)
    try:
        got: list[str] = []
        fetches = [asyncio.ensure_future(_fetch(*server, word)) for word in words]  # all in flight at once
        for i, fetched in enumerate(asyncio.as_completed(fetches)):
            chunk = await fetched
            got.append(chunk)
            await client.publish(channel, json.dumps({"i": i, "chunk": chunk}))
        await client.publish(channel, json.dumps({"done": len(got)}))
        return got
    finally:
        await client.aclose()


@app.task(name="demos.async_tasks.stream_words", bind=True)
def stream_words(self: Any, words: list[str], host: str, port: int, redis_url: str, channel: str) -> dict[str, Any]:
    """A sync task running a coroutine on its thread's long-lived loop (:mod:`demos.async_tasks.loops`)."""
    chunks, loop_id = run(_stream(words, (host, port), redis_url, channel))
    return {
        "chunks": chunks,
        "loop": loop_id,
        "pid": os.getpid(),
        "hostname": self.request.hostname,
    }
