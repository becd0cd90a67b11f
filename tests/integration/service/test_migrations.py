"""The Alembic migrations build exactly the schema the code declares (no drift), on both backends, and upgrade a
database of an earlier head with its data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from api.db.engine import MIGRATIONS, make_engine, migrate
from api.db.tables import job_events, jobs, metadata, tokens


def test_migrated_database_matches_the_declared_tables(database_url: str) -> None:
    """After `migrate`, Alembic finds nothing to change between the database and `api.db.tables`."""
    engine = make_engine(database_url)
    try:
        migrate(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_upgrading_a_database_of_the_previous_head_makes_names_unique_and_attributes_jobs(database_url: str) -> None:
    """A database at revision 0002 with two tokens named ``alice`` (users), one ``bob`` (user) and one ``ops``
    (operator), and jobs (with events) of alice, bob (two organisations) and a name no token has. After the
    upgrade: the older alice keeps the name and the newer is ``alice #2``; bob's jobs are owned by bob's id;
    alice's job (ambiguous) and the orphan's are owned by no token; bob carries the organisations his jobs used
    (first used first), the alices ``default``, ops none; every event is still there; the schema matches the
    declared tables; and a third ``alice`` cannot be stored."""
    engine = make_engine(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    now = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0002")
        with engine.begin() as conn:
            for token_id, name, role in (
                (1, "alice", "user"),
                (2, "alice", "user"),
                (3, "bob", "user"),
                (4, "ops", "operator"),
            ):
                conn.execute(
                    text(
                        "INSERT INTO tokens (id, name, role, token_hash, prefix, created_at) "
                        "VALUES (:id, :name, :role, :hash, 'sl_', :at)"
                    ),
                    {"id": token_id, "name": name, "role": role, "hash": f"{token_id:064d}", "at": now},
                )
            old_jobs = (
                ("j-alice", "alice", "physics", 0),
                ("j-bob-2", "bob", "chem", 2),
                ("j-bob-1", "bob", "physics", 1),
                ("j-ghost", "ghost", "x", 0),
            )
            for job_id, owner, organisation, minutes in old_jobs:
                at = now + timedelta(minutes=minutes)
                conn.execute(
                    text(
                        "INSERT INTO jobs (job_id, name, workload_class, owner, organisation, priority, spec, state, "
                        "reason, attempt, submitted_at, idempotency_key) VALUES (:id, 'n', 'general', :owner, :org, "
                        "0, '{}', 'queued', 'queued', 0, :at, :id)"
                    ),
                    {"id": job_id, "owner": owner, "org": organisation, "at": at},
                )
                conn.execute(
                    text("INSERT INTO job_events (job_id, at, state, reason) VALUES (:id, :at, 'queued', 'queued')"),
                    {"id": job_id, "at": at},
                )

        migrate(engine)

        with engine.connect() as conn:
            named = {row.id: (row.name, row.organisations) for row in conn.execute(select(tokens))}
            owners = dict(conn.execute(select(jobs.c.job_id, jobs.c.owner_id)).all())
            events = conn.execute(select(func.count()).select_from(job_events)).scalar_one()
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert named == {
            1: ("alice", '["default"]'),
            2: ("alice #2", '["default"]'),
            3: ("bob", '["physics", "chem"]'),
            4: ("ops", None),
        }
        assert owners == {"j-alice": None, "j-bob-1": 3, "j-bob-2": 3, "j-ghost": None}
        assert events == 4
        assert diff == []
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(
                tokens.insert().values(name="alice", role="user", token_hash="f" * 64, prefix="sl_", created_at=now)
            )
    finally:
        engine.dispose()
