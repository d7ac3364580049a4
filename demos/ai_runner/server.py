"""The API served by uvicorn in a thread of this process, on a port of its choosing (0: any free one)."""

from __future__ import annotations

import threading
from time import monotonic

import uvicorn
from fastapi import FastAPI

__all__ = ["ApiServer"]


class ApiServer:
    """``with ApiServer(api) as server:`` serves ``api`` at ``server.url`` until the block ends."""

    def __init__(self, api: FastAPI, host: str = "127.0.0.1", port: int = 0, start_timeout: float = 10.0) -> None:
        config = uvicorn.Config(api, host=host, port=port, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="csim-api", daemon=True)
        self._host = host
        self._start_timeout = start_timeout

    def __enter__(self) -> ApiServer:
        self._thread.start()
        deadline = monotonic() + self._start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the API server did not start within {self._start_timeout:g} s")
            self._thread.join(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10.0)
