"""utilisation and energy: per-node usage and power measures, and the allocated layer's snapshots

Adds the measures of `api.db.tables.USAGE_COLUMNS` (unpriced accelerators, the accelerators' part of the peak,
consumed CPU, memory, accelerators and FLOPS, measured / declared / facility power, the peak of powered nodes) to
nodes, rollups and snapshots (not reports, whose columns the audit chain digests), each 0 by default (a node counts
them from its next report; the rollups stay equal to the sums over nodes), and creates allocation_snapshots (what
dispatched jobs held at each snapshot) and the jobs indexes the census's demand over a window reads.

Revision ID: 0005_utilisation_energy
Revises: 0004_audit_chain
Create Date: 2026-12-03 15:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_utilisation_energy"
down_revision = "0004_audit_chain"
branch_labels = None
depends_on = None

PRECISIONS = ("fp64_flops", "fp32_flops", "fp16_flops", "int8_ops")
# As in api.db.tables at this revision (copied: a migration must not change when the code does).
INTEGER_COLUMNS = (
    "unpriced_accelerators",
    "usage_nodes",
    "measured_power_nodes",
    "partial_power_nodes",
    "declared_power_nodes",
    "pue_nodes",
)
FLOAT_COLUMNS = (
    *(f"accelerator_{c}" for c in PRECISIONS),
    "cpu_busy_cores",
    "memory_used_bytes",
    "accelerators_busy",
    *(f"consumed_{c}" for c in PRECISIONS),
    "measured_watts",
    "declared_watts",
    "facility_watts",
    *(f"powered_{c}" for c in PRECISIONS),
)
TABLES = ("nodes", "rollups", "snapshots")  # not reports: the audit chain digests its columns as they are


def upgrade() -> None:
    for table in TABLES:
        for name in INTEGER_COLUMNS:
            op.add_column(table, sa.Column(name, sa.BigInteger(), server_default="0", nullable=False))
        for name in FLOAT_COLUMNS:
            op.add_column(table, sa.Column(name, sa.Float(), server_default="0", nullable=False))
    op.create_table(
        "allocation_snapshots",
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("region_code", sa.String(length=12), nullable=False),
        sa.Column("jobs", sa.BigInteger(), nullable=False),
        sa.Column("cpus", sa.Float(), nullable=False),
        sa.Column("gpus", sa.Float(), nullable=False),
        sa.Column("memory_bytes", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("taken_at", "tier", "region_code", name=op.f("pk_allocation_snapshots")),
    )
    op.create_index("ix_jobs_dispatched_at", "jobs", ["dispatched_at"], unique=False)
    op.create_index("ix_jobs_finished_at", "jobs", ["finished_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_jobs_finished_at", table_name="jobs")
    op.drop_index("ix_jobs_dispatched_at", table_name="jobs")
    op.drop_table("allocation_snapshots")
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            for name in (*INTEGER_COLUMNS, *FLOAT_COLUMNS):
                batch.drop_column(name)
