"""A local SMTP server (aiosmtpd, a real SMTP implementation) that keeps what it receives, and can
refuse the first messages with a transient ``451`` so that the email task's retries are exercised."""

from __future__ import annotations

import socket
import threading
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

__all__ = ["Inbox"]


class Inbox:
    """``with Inbox(refuse_first=2) as inbox:`` serves SMTP on ``inbox.host``/``inbox.port``."""

    def __init__(self, refuse_first: int = 0) -> None:
        self.refuse_first = refuse_first
        self.refused = 0
        self.messages: list[Message] = []
        self._arrived = threading.Condition()
        with socket.socket() as probe:  # a free port (aiosmtpd's readiness check needs a fixed one)
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.host = "127.0.0.1"
        self._controller = Controller(self, hostname=self.host, port=self.port, ready_timeout=10.0)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook name
        with self._arrived:
            if self.refused < self.refuse_first:
                self.refused += 1
                return "451 4.3.0 Mailbox busy, try again later"
            self.messages.append(message_from_bytes(envelope.content))
            self._arrived.notify_all()
        return "250 OK"

    def wait_for(self, count: int, timeout: float) -> list[Message]:
        """The messages received, once there are ``count`` (or when ``timeout`` s have passed)."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)

    def __enter__(self) -> Inbox:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
