"""token identity: unique token names, user tokens' organisations, jobs owned by the token's id

Revision ID: 0003_token_identity
Revises: 0002
Create Date: 2026-12-03 12:40:00

Before this revision a job's owner was its token's *name*, which was not unique, and a job's organisation was
whatever the submitter wrote. Upgrading an existing database:

- ``jobs.owner_id`` is set to the id of the one token whose name is the job's ``owner``. A job whose owner name
  was shared by several tokens (or by none) cannot be attributed: its ``owner_id`` stays null, so only admins and
  operators see it (and only admins its environment's values); it is never handed to the wrong token.
- Duplicate token names are made unique: the oldest token keeps the name, each later one gets `` #<id>``
  appended (shortened to fit 128 characters); nothing else about those tokens changes, and they keep working.
- Every existing ``user`` token is granted the organisations its own (attributed) jobs already used, in the order
  first used, or ``default`` (what a job without one had) if it has none: the status quo, which an admin should
  review with ``suanli token list``, since these organisations were once chosen by the user.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision = "0003_token_identity"
down_revision = "0002"
branch_labels = None
depends_on = None

NAME_MAX = 128

tokens = sa.table(
    "tokens",
    sa.column("id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("role", sa.String),
    sa.column("organisations", sa.Text),
)
jobs = sa.table(
    "jobs",
    sa.column("job_id", sa.String),
    sa.column("owner", sa.String),
    sa.column("owner_id", sa.Integer),
    sa.column("organisation", sa.String),
    sa.column("submitted_at", sa.DateTime),
)


def _suffixed(name: str, token_id: int, taken: set[str]) -> str:
    """`name` with `` #<id>`` appended (and more ``#`` until it is free), at most NAME_MAX characters."""
    suffix = f" #{token_id}"
    while True:
        candidate = name[: NAME_MAX - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
        suffix = " #" + suffix.lstrip()


def _attribute_and_rename(conn: sa.Connection) -> None:
    rows = conn.execute(sa.select(tokens.c.id, tokens.c.name, tokens.c.role).order_by(tokens.c.id)).all()
    by_name: dict[str, list[int]] = defaultdict(list)
    for token_id, name, _ in rows:
        by_name[name].append(token_id)
    # Jobs of a name that exactly one token had are that token's.
    for name, ids in by_name.items():
        if len(ids) == 1:
            conn.execute(sa.update(jobs).where(jobs.c.owner == name).values(owner_id=ids[0]))
    # User tokens: the organisations their own jobs used, first used first; else "default".
    for token_id, _, role in rows:
        if role != "user":
            continue
        used = conn.execute(
            sa.select(jobs.c.organisation, sa.func.min(jobs.c.submitted_at).label("first"))
            .where(jobs.c.owner_id == token_id)
            .group_by(jobs.c.organisation)
            .order_by(sa.text("first"), jobs.c.organisation)
        ).all()
        organisations = [organisation for organisation, _ in used] or ["default"]
        conn.execute(sa.update(tokens).where(tokens.c.id == token_id).values(organisations=json.dumps(organisations)))
    # Later tokens of a shared name get " #<id>".
    taken = set(by_name)
    for name, ids in by_name.items():
        for token_id in ids[1:]:
            new = _suffixed(name, token_id, taken)
            taken.add(new)
            conn.execute(sa.update(tokens).where(tokens.c.id == token_id).values(name=new))


@contextmanager
def _jobs_rebuildable() -> Iterator[None]:
    """SQLite changes ``jobs``' constraints by rebuilding it (copy, drop, rename); with foreign keys on, dropping
    it fails while ``job_events`` rows refer to it (and the check cannot be turned off inside the migration's
    transaction). So on SQLite ``job_events`` loses its foreign key for the rebuild and gets it back after, each
    row checked again then. PostgreSQL alters in place: nothing to do."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        with op.batch_alter_table("job_events", schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f("fk_job_events_job_id_jobs"), type_="foreignkey")
    yield
    if sqlite:
        with op.batch_alter_table("job_events", schema=None) as batch_op:
            batch_op.create_foreign_key(batch_op.f("fk_job_events_job_id_jobs"), "jobs", ["job_id"], ["job_id"])


def upgrade() -> None:
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("organisations", sa.Text(), nullable=True))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_id", sa.Integer(), nullable=True))

    _attribute_and_rename(op.get_bind())

    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f("uq_tokens_name"), ["name"])
    with _jobs_rebuildable(), op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_jobs_owner"), type_="unique")
        batch_op.drop_index("ix_jobs_owner_submitted")
        batch_op.create_unique_constraint(batch_op.f("uq_jobs_owner_id"), ["owner_id", "idempotency_key"])
        batch_op.create_index("ix_jobs_owner_id_submitted", ["owner_id", "submitted_at"], unique=False)
        batch_op.create_foreign_key(batch_op.f("fk_jobs_owner_id_tokens"), "tokens", ["owner_id"], ["id"])


def downgrade() -> None:
    # Names stay as renamed (they are unique, which the older schema allows); organisations are dropped.
    with _jobs_rebuildable(), op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_jobs_owner_id_tokens"), type_="foreignkey")
        batch_op.drop_index("ix_jobs_owner_id_submitted")
        batch_op.drop_constraint(batch_op.f("uq_jobs_owner_id"), type_="unique")
        batch_op.create_index("ix_jobs_owner_submitted", ["owner", "submitted_at"], unique=False)
        batch_op.create_unique_constraint(batch_op.f("uq_jobs_owner"), ["owner", "idempotency_key"])
        batch_op.drop_column("owner_id")
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_tokens_name"), type_="unique")
        batch_op.drop_column("organisations")
