"""Keeping the rollups table in step with node state: every change is a delta applied in the same transaction.

A node contributes its counts and peaks to exactly one (tier, region, status) cell; when it changes (a new
report, a status change) its old contribution is subtracted and the new one added, so the census never
needs to scan nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from api.census import UNASSIGNED
from api.db.tables import MEASURE_COLUMNS, nodes, rollups

CellKey = tuple[str, str, str]  # tier, region code ("" if none), status


def contribution(row: Mapping[Any, Any]) -> dict[str, float]:
    """What one node (a nodes row or the values about to be written) adds to its cell."""
    return {"nodes": 1.0, **{name: float(row[name]) for name in MEASURE_COLUMNS}}


def cell_of(row: Mapping[Any, Any]) -> CellKey:
    """The cell a node row belongs to."""
    return (str(row["tier"]), row["region_code"] or UNASSIGNED, str(row["status"]))


def apply_delta(connection: Connection, key: CellKey, values: Mapping[str, float], sign: int) -> None:
    """Add (sign 1) or subtract (sign -1) `values` to the cell `key`, creating it if needed."""
    tier, region, status = key
    signed = {name: sign * value for name, value in values.items()}
    dialect = connection.dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(rollups).values(tier=tier, region_code=region, status=status, **signed)
    stmt = stmt.on_conflict_do_update(
        index_elements=["tier", "region_code", "status"],
        set_={name: rollups.c[name] + stmt.excluded[name] for name in signed},
    )
    connection.execute(stmt)


def move(connection: Connection, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> None:
    """Replace a node's old contribution (None for a new node) by its new one (None for a removed node)."""
    if old is not None and new is not None and cell_of(old) == cell_of(new):
        before, after = contribution(old), contribution(new)
        delta = {name: after[name] - before[name] for name in after}
        if any(delta.values()):
            apply_delta(connection, cell_of(new), delta, 1)
        return
    if old is not None:
        apply_delta(connection, cell_of(old), contribution(old), -1)
    if new is not None:
        apply_delta(connection, cell_of(new), contribution(new), 1)


def rebuild(connection: Connection) -> int:
    """Recompute every rollup cell from the nodes table (repair, bulk loads); returns the number of cells."""
    sums = [func.count().label("nodes"), *[func.sum(nodes.c[name]).label(name) for name in MEASURE_COLUMNS]]
    groups = connection.execute(
        select(nodes.c.tier, func.coalesce(nodes.c.region_code, UNASSIGNED).label("region_code"), nodes.c.status, *sums)
        .group_by(nodes.c.tier, nodes.c.region_code, nodes.c.status)
    ).mappings().all()  # fmt: skip
    connection.execute(rollups.delete())
    if groups:
        connection.execute(rollups.insert(), [dict(g) for g in groups])
    return len(groups)
