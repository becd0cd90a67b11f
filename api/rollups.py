"""Keeping the rollups table in step with node state: every change is a delta applied in the same transaction.

A node contributes its counts and peaks to exactly one (tier, region, status) cell; when it changes (a new
report, a status change) its old contribution is subtracted and the new one added (`Deltas`), so the census never
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


class Deltas:
    """Changes to rollup cells gathered over many nodes, then applied with one statement per changed cell."""

    def __init__(self) -> None:
        self.cells: dict[CellKey, dict[str, float]] = {}

    def add(self, key: CellKey, row: Mapping[Any, Any], sign: float) -> None:
        """Add (sign 1) or remove (sign -1) a node's contribution, read from `row`, to the cell `key`."""
        cell = self.cells.setdefault(key, dict.fromkeys(("nodes", *MEASURE_COLUMNS), 0.0))
        for name, value in contribution(row).items():
            cell[name] += sign * value

    def apply(self, connection: Connection) -> None:
        """Write every non-zero change."""
        for key, values in self.cells.items():
            if any(values.values()):
                apply_delta(connection, key, values, 1)


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
