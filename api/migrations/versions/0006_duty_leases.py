"""duty leases: one lease row per singleton duty, and the token revocation generation

Revision ID: 0006_duty_leases
Revises: 0005_utilisation_energy
Create Date: 2026-12-03 15:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_duty_leases"
down_revision = "0005_utilisation_energy"
branch_labels = None
depends_on = None

DUTIES = ("dispatcher", "housekeeping", "kubernetes-sync")  # api.duties.lease.DUTIES


def upgrade() -> None:
    leases = op.create_table(
        "leases",
        sa.Column("duty", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("term", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("acquired_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("duty", name=op.f("pk_leases")),
    )
    op.bulk_insert(
        leases, [{"duty": d, "holder": "", "term": 0, "expires_at": 0.0, "acquired_at": 0.0} for d in DUTIES]
    )
    generations = op.create_table(
        "generations",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_generations")),
    )
    op.bulk_insert(generations, [{"name": "token_revocations", "value": 0}])


def downgrade() -> None:
    op.drop_table("generations")
    op.drop_table("leases")
