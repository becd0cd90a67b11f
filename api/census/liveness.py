"""Liveness and history: nodes that stop reporting become stale, then offline; the rollups are copied to
snapshots on a schedule.  Records are never deleted.

Both run from the service's background loop (`Housekeeper`), and can be called directly by tests.
"""

from __future__ import annotations

import logging
import threading
from contextlib import nullcontext
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select

from api.census.allocation import snapshot_allocation
from api.census.arithmetic import UNASSIGNED
from api.census.rollups import Deltas
from api.db.engine import write_transaction
from api.db.tables import MEASURE_COLUMNS, nodes, rollups, snapshots

log = logging.getLogger(__name__)

ACTIVE, STALE, OFFLINE = "active", "stale", "offline"
STATUSES = (ACTIVE, STALE, OFFLINE)


def _demote(engine: Engine, lock: threading.Lock | None, src: str, dst: str, cutoff: datetime) -> int:
    """Move every `src` node last heard before `cutoff` to `dst`, moving exactly their totals between rollup
    cells: the UPDATE returns the rows it changed, so a node that reports meanwhile is never miscounted."""
    where = (nodes.c.status == src) & (nodes.c.last_report_at < cutoff)
    returning = [nodes.c.tier, nodes.c.region_code, *[nodes.c[name] for name in MEASURE_COLUMNS]]
    with lock or nullcontext(), write_transaction(engine) as conn:
        moved = conn.execute(nodes.update().where(where).values(status=dst).returning(*returning)).mappings().all()
        if not moved:
            return 0
        deltas = Deltas()
        for row in moved:
            tier, region = row["tier"], row["region_code"] or UNASSIGNED
            deltas.add((tier, region, src), row, -1)
            deltas.add((tier, region, dst), row, 1)
        deltas.apply(conn)
    log.info("%d node(s) %s -> %s (no report since %s)", len(moved), src, dst, cutoff.isoformat())
    return len(moved)


def sweep(
    engine: Engine, now: datetime, stale_after: float, offline_after: float, lock: threading.Lock | None = None
) -> int:
    """Apply both liveness transitions; returns how many nodes changed status."""
    changed = _demote(engine, lock, STALE, OFFLINE, now - timedelta(seconds=offline_after))
    changed += _demote(engine, lock, ACTIVE, OFFLINE, now - timedelta(seconds=offline_after))
    changed += _demote(engine, lock, ACTIVE, STALE, now - timedelta(seconds=stale_after))
    return changed


def snapshot(engine: Engine, now: datetime, lock: threading.Lock | None = None) -> int:
    """Copy every rollup cell into the snapshots table at time `now`, and what dispatched jobs hold into
    allocation_snapshots (the allocated layer over time), in one transaction; returns the number of cells."""
    columns = ["tier", "region_code", "status", "nodes", *MEASURE_COLUMNS]
    with lock or nullcontext(), write_transaction(engine) as conn:
        rows = [dict(r) for r in conn.execute(select(*[rollups.c[c] for c in columns])).mappings()]
        if rows:  # no census yet: nothing to snapshot (the next sweep tries again)
            conn.execute(snapshots.insert(), [{"taken_at": now, **row} for row in rows])
            snapshot_allocation(conn, now)
    return len(rows)


def last_snapshot_at(engine: Engine) -> datetime | None:
    """When the newest snapshot was taken."""
    with engine.connect() as conn:
        value: datetime | None = conn.execute(select(func.max(snapshots.c.taken_at))).scalar()
    return value
