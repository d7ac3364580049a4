"""The runner's table and sessions (SQLAlchemy 2): SQLite by default, PostgreSQL given a URL.

``AI_RUNNER_DATABASE_URL`` says which (``postgresql+psycopg://user@host/db``); the API and the
worker must see the same one. :func:`get_sync_db_session` is the guide's session for tasks.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import DateTime, Engine, Integer, String, Text, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

__all__ = [
    "DEFAULT_URL",
    "AITask",
    "Base",
    "database_url",
    "dispose",
    "engine_for",
    "get_sync_db_session",
    "init_db",
]

DEFAULT_URL = "sqlite:///ai_runner.db"


class Base(DeclarativeBase):
    pass


def _now() -> datetime:
    return datetime.now(timezone.utc)


class AITask(Base):
    __tablename__ = "ai_tasks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    prompt: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="PENDING")
    celery_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: How many times the text was generated (1 however often the message is delivered).
    generations: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prompt": self.prompt,
            "model": self.model,
            "status": self.status,
            "celery_id": self.celery_id,
            "progress": self.progress,
            "result": self.result,
            "error": self.error,
            "attempts": self.attempts,
            "generations": self.generations,
        }


_engines: dict[str, tuple[Engine, sessionmaker[Session]]] = {}
_lock = threading.Lock()


def database_url() -> str:
    return os.environ.get("AI_RUNNER_DATABASE_URL", DEFAULT_URL)


def engine_for(url: str | None = None) -> tuple[Engine, sessionmaker[Session]]:
    """One engine (and session factory) per URL in this process; SQLite in WAL mode with a busy
    timeout, so that the API's requests and the worker's threads can write side by side."""
    url = url or database_url()
    with _lock:
        found = _engines.get(url)
        if found is None:
            sqlite = url.startswith("sqlite")
            engine = create_engine(
                url,
                connect_args={"check_same_thread": False, "timeout": 30} if sqlite else {},
                pool_pre_ping=not sqlite,
            )
            if sqlite:

                @event.listens_for(engine, "connect")
                def _pragmas(connection: Any, record: Any) -> None:
                    cursor = connection.cursor()
                    cursor.execute("PRAGMA journal_mode=WAL")
                    cursor.execute("PRAGMA busy_timeout=30000")
                    cursor.close()

            found = _engines[url] = (engine, sessionmaker(engine, expire_on_commit=False))
        return found


def init_db(url: str | None = None) -> None:
    """Create the table if it is not there."""
    Base.metadata.create_all(engine_for(url)[0])


def dispose(url: str | None = None) -> None:
    """Close the engine of ``url`` (its pooled connections) and forget it."""
    with _lock:
        found = _engines.pop(url or database_url(), None)
    if found is not None:
        found[0].dispose()


@contextmanager
def get_sync_db_session(url: str | None = None) -> Iterator[Session]:
    """A session committed on success and rolled back on error (the guide's helper for tasks)."""
    session = engine_for(url)[1]()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
