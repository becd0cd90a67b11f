"""The service's tables (SQLAlchemy 2 Core). Alembic migrations in ``api/migrations`` create them.

Units are SI base units; FLOPS are stored as double precision. Only definitions here: no engine, no I/O.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

PRECISION_COLUMNS = ("fp64_flops", "fp32_flops", "fp16_flops", "int8_ops")
# Utilisation and energy (issue 15; migration 0005): what a node adds besides its hardware and peaks.  Integer
# columns count nodes or devices; the others are floats.  `api.ingest.usage` fills them from a report.
USAGE_INTEGER_COLUMNS = (
    "unpriced_accelerators",  # accelerators found but not priced (also counted in `accelerators`)
    "usage_nodes",  # 1 when the node's report carried usage (the consumed layer's coverage)
    "measured_power_nodes",  # 1 when the node's power is counted as measured
    "partial_power_nodes",  # 1 when that measurement misses a part of the node (see docs/census.md, Energy)
    "declared_power_nodes",  # 1 when the node's power is its declared power_watts
    "pue_nodes",  # 1 when the node's site declares a PUE
)
USAGE_FLOAT_COLUMNS = (
    # the accelerators' part of the peak per precision (the rest is the CPUs'): allocated FLOPS per GPU and per core
    *(f"accelerator_{c}" for c in PRECISION_COLUMNS),
    "cpu_busy_cores",  # logical CPUs busy on average over the report's interval
    "memory_used_bytes",
    "accelerators_busy",  # sum of the accelerators' utilisation fractions
    *(f"consumed_{c}" for c in PRECISION_COLUMNS),  # the peak scaled by each part's utilisation
    "measured_watts",
    "declared_watts",
    "facility_watts",  # (measured or declared) x the site's PUE where declared
    *(f"powered_{c}" for c in PRECISION_COLUMNS),  # the peak of nodes with a power figure: GFLOPS per watt
)
USAGE_COLUMNS = (*USAGE_INTEGER_COLUMNS, *USAGE_FLOAT_COLUMNS)
# A node's hardware and peaks: what the reports (history) table keeps of each report, and the audit chain digests.
HARDWARE_COLUMNS = ("physical_cores", "threads", "accelerators", "memory_bytes", *PRECISION_COLUMNS)
# What a node contributes to a rollup, besides its count (nodes, rollups and snapshots hold them all).
MEASURE_COLUMNS = (*HARDWARE_COLUMNS, *USAGE_COLUMNS)

regions = Table(
    "regions",
    metadata,
    Column("code", String(12), primary_key=True),
    Column("parent_code", String(12), ForeignKey("regions.code"), nullable=True),
    Column("level", String(16), nullable=False),  # country, province, city, district
    Column("name_zh", String(64), nullable=False),
    Column("name_en", String(64), nullable=False),
    Column("population", BigInteger, nullable=True),
    Column("population_source", String(64), nullable=True),
    Column("area_km2", Float, nullable=True),
)


def _measures(usage: bool = True) -> list[Column[int] | Column[float]]:
    hardware: list[Column[int] | Column[float]] = [
        Column("physical_cores", BigInteger, nullable=False, default=0),
        Column("threads", BigInteger, nullable=False, default=0),
        Column("accelerators", BigInteger, nullable=False, default=0),
        Column("memory_bytes", Float, nullable=False, default=0.0),
        *[Column(name, Float, nullable=False, default=0.0) for name in PRECISION_COLUMNS],
    ]
    if not usage:
        return hardware
    return [
        *hardware,
        *[Column(name, BigInteger, nullable=False, default=0, server_default="0") for name in USAGE_INTEGER_COLUMNS],
        *[Column(name, Float, nullable=False, default=0.0, server_default="0") for name in USAGE_FLOAT_COLUMNS],
    ]


nodes = Table(
    "nodes",
    metadata,
    Column("node_id", String(128), primary_key=True),
    Column("source", String(16), nullable=False),  # agent or kubernetes (api.discovery.record)
    Column("hostname", String(256), nullable=False),
    Column("region_code", String(12), ForeignKey("regions.code"), nullable=True),
    Column("organisation", String(128), nullable=True),
    Column("site", String(128), nullable=True),
    Column("tier", String(16), nullable=False),
    Column("tier_reason", String(256), nullable=False),
    Column("status", String(16), nullable=False),  # active, stale, offline
    Column("first_seen_at", DateTime(timezone=True), nullable=False),
    Column("last_report_at", DateTime(timezone=True), nullable=False),  # server's receive time
    Column("last_generated_at", DateTime(timezone=True), nullable=False),  # agent's clock
    Column("last_sequence", BigInteger, nullable=False),
    Column("last_report_id", String(36), nullable=False),
    *_measures(),
    # JSON documents, stored as text exactly as serialised (cheaper than a JSON type's round trip on ingest).
    Column("inventory", Text, nullable=False),
    Column("peaks", Text, nullable=False),  # recomputed by the server
    Column("agent_peaks", Text, nullable=False),  # as the agent reported them, for comparison only
    Index("ix_nodes_tier_region_status", "tier", "region_code", "status"),
    Index("ix_nodes_status_last_report_at", "status", "last_report_at"),
)

# Every accepted report, newest state or not: the node's history and the idempotency record (report_id).
reports = Table(
    "reports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("report_id", String(36), nullable=False),
    Column("node_id", String(128), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("generated_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("applied", Integer, nullable=False),  # 1 if it became the node's state, 0 if an older report
    Column("tier", String(16), nullable=False),
    Column("region_code", String(12), nullable=True),
    *_measures(usage=False),  # the audit chain digests these (api.audit.chain.REPORT_FIELDS)
    UniqueConstraint("report_id"),
    Index("ix_reports_node_generated", "node_id", "generated_at"),
)

# Totals per (tier, region, status), kept up to date on every state change so census queries never scan nodes.
rollups = Table(
    "rollups",
    metadata,
    Column("tier", String(16), primary_key=True),
    Column("region_code", String(12), primary_key=True),  # "" for nodes without a region label
    Column("status", String(16), primary_key=True),
    Column("nodes", BigInteger, nullable=False, default=0),
    *_measures(),
)

# Periodic copies of the rollups: the census over time.
snapshots = Table(
    "snapshots",
    metadata,
    Column("taken_at", DateTime(timezone=True), primary_key=True),
    Column("tier", String(16), primary_key=True),
    Column("region_code", String(12), primary_key=True),
    Column("status", String(16), primary_key=True),
    Column("nodes", BigInteger, nullable=False, default=0),
    *_measures(),
)

# What Suanli's dispatched jobs held at each census snapshot (taken with it): the allocated layer over time.  One
# row per (tier, region) with any job; region_code "" for census nodes without a region label, UNATTRIBUTED for
# nodes the census does not know (a job's node ids that match no census node).
allocation_snapshots = Table(
    "allocation_snapshots",
    metadata,
    Column("taken_at", DateTime(timezone=True), primary_key=True),
    Column("tier", String(16), primary_key=True),
    Column("region_code", String(12), primary_key=True),
    Column("jobs", BigInteger, nullable=False),
    Column("cpus", Float, nullable=False),
    Column("gpus", Float, nullable=False),
    Column("memory_bytes", Float, nullable=False),
)
UNATTRIBUTED = "unattributed"

tokens = Table(
    "tokens",
    metadata,
    # The principal's stable id: jobs are owned by it (never reused: rows are revoked, not deleted).
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),  # unique among all tokens, revoked ones included
    Column("role", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("prefix", String(16), nullable=False),  # the first characters, to recognise a token in lists
    Column("node_id", String(128), nullable=True),  # agent tokens: bound on first report
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    # user tokens: JSON list of the organisations it may submit jobs for (the first is its default); null otherwise
    Column("organisations", Text, nullable=True),
    UniqueConstraint("token_hash"),
    UniqueConstraint("name"),
)

# Jobs submitted to the scheduler: the spec as submitted, the current state and the dispatcher's decision.
jobs = Table(
    "jobs",
    metadata,
    Column("job_id", String(36), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("workload_class", String(16), nullable=False),
    Column("owner", String(128), nullable=False),  # the submitting token's name when it was submitted (for people)
    # The submitting token's id: who owns the job (sees it, its environment's values, cancels it). Null only for
    # jobs an older version stored under a token name it could not attribute to one token (see migration 0003).
    Column("owner_id", Integer, ForeignKey("tokens.id"), nullable=True),
    Column("organisation", String(128), nullable=False),  # the enforced organisation (quotas and fair share)
    Column("priority", Integer, nullable=False),
    Column("spec", Text, nullable=False),  # scheduler.models.JobSpec as JSON, verbatim
    Column("state", String(16), nullable=False),
    Column("reason", Text, nullable=False),  # why it is in its state: the routing decision, why it waits, how it ended
    Column("position", Integer, nullable=True),  # place in its tier's queue while waiting (1 = next)
    Column("tier", String(16), nullable=True),  # home tier while waiting; the tier it runs on once dispatched
    Column("node_ids", Text, nullable=True),  # JSON list of the nodes it was dispatched to
    Column("attempt", Integer, nullable=False),  # 0 for the first run, +1 per retry
    Column("submission_id", String(64), nullable=True),  # Ray's submission id for the current attempt
    Column("driver_node_id", String(64), nullable=True),  # where Ray ran the entrypoint
    Column("exit_code", Integer, nullable=True),
    # Set before asking Ray to stop it: the state to record once stopped (cancelled, or failed past its time
    # limit) and why.
    Column("stop_state", String(16), nullable=True),
    Column("stop_reason", Text, nullable=True),
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("dispatched_at", DateTime(timezone=True), nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Index("ix_jobs_state_priority", "state", "priority"),
    # A client's key for this submission (header Idempotency-Key): a retried POST returns the same job.
    Column("idempotency_key", String(128), nullable=True),
    Index("ix_jobs_owner_id_submitted", "owner_id", "submitted_at"),
    UniqueConstraint("owner_id", "idempotency_key"),
    # The census's demand over a window (api.census.allocation.demand): jobs dispatched or ended since a time.
    Index("ix_jobs_dispatched_at", "dispatched_at"),
    Index("ix_jobs_finished_at", "finished_at"),
)

# Every state change of every job, written before the dispatcher acts on it.
job_events = Table(
    "job_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(36), ForeignKey("jobs.job_id"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_job_events_job", "job_id", "id"),
)

# The audit chain (`api.audit`): one entry per privileged act and per group commit of reports, each hashed over the
# previous entry's hash and its own fields; appended only, in the transaction of the act it records.
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),  # 1, 2, 3, ... with no gap
    Column("at", DateTime(timezone=True), nullable=False),
    Column("action", String(32), nullable=False),  # e.g. token.create, job.submit, reports.store
    Column("actor_id", Integer, nullable=True),  # the acting token's id; null: the service itself
    Column("actor", String(128), nullable=False),  # the acting token's name, or "service"
    Column("subject", String(256), nullable=True),  # what was acted on: token:7, job:<id>, node:<id>
    Column("detail", Text, nullable=False),  # canonical JSON (sorted keys, compact), hashed as stored
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_log_action_seq", "action", "seq"),
    Index("ix_audit_log_at", "at"),
)

# The chain's head, one row (id 1): the last entry's seq and hash.  Appenders lock it (PostgreSQL: FOR UPDATE;
# SQLite: the write lock every write transaction takes), so two writers never fork the chain, and an entry cut from
# the end of `audit_log` shows against it.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

# Singleton duties' leases (`api.duties`): one row per duty (dispatcher, housekeeping, kubernetes-sync). `term` grows
# by one at every acquisition; `expires_at` is in seconds since the epoch by the database's clock, so every replica
# compares against one clock. A lease is taken (compare-and-set) only once expired.
leases = Table(
    "leases",
    metadata,
    Column("duty", String(32), primary_key=True),
    Column("holder", String(128), nullable=False),  # host:pid:random of the process holding it; "" never held
    Column("term", BigInteger, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("acquired_at", Float, nullable=False),
)

# Counters every replica polls (`api.auth.Revocations`): "token_revocations" grows by one at every revocation, so a
# replica drops its cached principals within a poll interval of a revocation made by another.
generations = Table(
    "generations",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)
