"""Keeping the rollups table in step with node state: every change is a delta applied in the same transaction.

A node contributes its counts and peaks to exactly one (tier, region, status) cell; when it changes (a new
report, a status change) its old contribution is subtracted and the new one added (`Deltas`), so the census never
needs to scan nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Integer, func, select

from api.census.arithmetic import UNASSIGNED
from api.db.tables import MEASURE_COLUMNS, nodes, rollups

CellKey = tuple[str, str, str]  # tier, region code ("" if none), status


def contribution(row: Mapping[Any, Any]) -> dict[str, float]:
    """What one node (a nodes row or the values about to be written) adds to its cell."""
    return {"nodes": 1.0, **{name: float(row[name]) for name in MEASURE_COLUMNS}}


def cell_of(row: Mapping[Any, Any]) -> CellKey:
    """The cell a node row belongs to."""
    return (str(row["tier"]), row["region_code"] or UNASSIGNED, str(row["status"]))


DELTA_COLUMNS = ("nodes", *MEASURE_COLUMNS)
INTEGER_COLUMNS = frozenset(c.name for c in rollups.columns if isinstance(c.type, Integer))


def _upsert_sql(dialect: str) -> str:
    """Add a row of deltas to its cell, creating the cell if needed: one statement for every dialect we run on
    (SQLite >= 3.24 and PostgreSQL share the ON CONFLICT form), built once from the table's own names."""
    mark = "?" if dialect == "sqlite" else "%s"
    columns = ("tier", "region_code", "status", *DELTA_COLUMNS)
    added = ", ".join(f"{c} = rollups.{c} + excluded.{c}" for c in DELTA_COLUMNS)
    return (
        f"INSERT INTO rollups ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))}) "  # noqa: S608
        f"ON CONFLICT (tier, region_code, status) DO UPDATE SET {added}"
    )


UPSERTS = {dialect: _upsert_sql(dialect) for dialect in ("sqlite", "postgresql")}  # the upsert of `Deltas.rows`
_measures = itemgetter(*MEASURE_COLUMNS)
_INTEGER = tuple(c in INTEGER_COLUMNS for c in DELTA_COLUMNS)


class Deltas:
    """Changes to rollup cells gathered over many nodes, then applied with one statement per changed cell."""

    def __init__(self) -> None:
        self.cells: dict[CellKey, list[float]] = {}  # per cell, the change of each of `DELTA_COLUMNS`

    def add(self, key: CellKey, row: Mapping[Any, Any], sign: float) -> None:
        """Add (sign 1) or remove (sign -1) a node's contribution, read from `row`, to the cell `key`."""
        cell = self.cells.get(key)
        if cell is None:
            cell = self.cells[key] = [0.0] * len(DELTA_COLUMNS)
        cell[0] += sign  # the node itself
        for i, value in enumerate(_measures(row), 1):  # a tuple and a plain loop: this runs twice per changed node
            cell[i] += sign * value

    def rows(self) -> list[tuple[Any, ...]]:
        """The parameters of `UPSERTS`, one row per changed cell, in key order: concurrent writers on PostgreSQL
        then lock shared cells in one order and cannot deadlock on them."""
        return [
            (*key, *(round(v) if integer else v for v, integer in zip(values, _INTEGER, strict=True)))
            for key, values in sorted(self.cells.items())
            if any(values)
        ]

    def apply(self, connection: Connection) -> None:
        """Write every non-zero change (`rows`), all cells in one executemany of driver SQL (SQLAlchemy's
        construction of an upsert per cell cost a fifth of the service's time at 10,000 agents:
        `benchmarks.load_agents`)."""
        rows = self.rows()
        if rows:
            connection.exec_driver_sql(UPSERTS[connection.dialect.name], rows)


def rebuild(connection: Connection) -> int:
    """Recompute every rollup cell from the nodes table (repair, bulk loads); returns the number of cells."""
    sums = [func.count().label("nodes"), *[func.sum(nodes.c[name]).label(name) for name in MEASURE_COLUMNS]]
    groups = (
        connection.execute(
            select(
                nodes.c.tier, func.coalesce(nodes.c.region_code, UNASSIGNED).label("region_code"), nodes.c.status, *sums
            ).group_by(nodes.c.tier, nodes.c.region_code, nodes.c.status)
        )
        .mappings()
        .all()
    )
    connection.execute(rollups.delete())
    if groups:
        connection.execute(rollups.insert(), [dict(g) for g in groups])
    return len(groups)
