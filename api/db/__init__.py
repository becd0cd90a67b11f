"""Storage: table definitions, engine set-up (SQLite or PostgreSQL), migrations and seeding."""

from __future__ import annotations

from datetime import UTC, datetime


def aware(value: datetime) -> datetime:
    """A stored datetime as UTC-aware: every datetime is written in UTC, and SQLite hands them back naive."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
