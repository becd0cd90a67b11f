"""Storage: table definitions, engine set-up (SQLite or PostgreSQL), migrations and seeding."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any


def aware(value: datetime) -> datetime:
    """A stored datetime as UTC-aware: every datetime is written in UTC, and SQLite hands them back naive."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def sqlite_time(value: datetime) -> str:
    """A datetime as SQLAlchemy's SQLite dialect stores it (UTC text, ``YYYY-MM-DD HH:MM:SS.ffffff``), so reads
    through SQLAlchemy parse it back; made by C code (`isoformat`), being called twice per report."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def _sqlite_read_time(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _as_is(value: datetime) -> datetime:
    return value


def storage_time(dialect: str) -> Callable[[Any], Any]:
    """How a datetime is handed to `dialect`'s driver, as SQLAlchemy would hand it (for driver SQL)."""
    return sqlite_time if dialect == "sqlite" else _as_is


def read_time(dialect: str) -> Callable[[Any], datetime]:
    """How a datetime read by `dialect`'s driver becomes an aware UTC datetime (for driver SQL)."""
    return _sqlite_read_time if dialect == "sqlite" else aware
