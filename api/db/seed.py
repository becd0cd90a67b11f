"""Idempotent seeding from ``seeds/`` at start: regions with parents, population and area.

`region_rows` reads the seed file alone: `suanli k8s-sync --dry-run` checks region codes with it on an operator's
machine, so SQLAlchemy and the tables load only when `seed_regions` writes."""

from __future__ import annotations

import csv
import io
import logging
from typing import TYPE_CHECKING, Any

import seeds

if TYPE_CHECKING:
    from sqlalchemy import Connection

log = logging.getLogger(__name__)


def region_rows() -> list[dict[str, Any]]:
    """Rows of ``seeds/regions.csv``, parents before children."""
    rows = []
    for row in csv.DictReader(io.StringIO(seeds.read_text("regions.csv"))):
        rows.append(
            {
                "code": row["code"],
                "parent_code": row["parent"] or None,
                "level": row["level"],
                "name_zh": row["name_zh"],
                "name_en": row["name_en"],
                "population": int(row["population"]) if row["population"] else None,
                "population_source": row["population_source"] or None,
                "area_km2": float(row["area_km2"]) if row["area_km2"] else None,
            }
        )
    order = {"country": 0, "province": 1, "city": 2, "district": 3}
    return sorted(rows, key=lambda r: order.get(r["level"], 9))


def seed_regions(connection: Connection) -> int:
    """Insert missing regions and update changed ones; returns how many rows were written."""
    from sqlalchemy import select  # noqa: PLC0415 - see the module's docstring

    from api.db.tables import regions  # noqa: PLC0415

    existing = {r.code: dict(r._mapping) for r in connection.execute(select(regions))}
    written = 0
    for row in region_rows():
        current = existing.get(row["code"])
        if current is None:
            connection.execute(regions.insert().values(**row))
            written += 1
        elif current != row:
            connection.execute(regions.update().where(regions.c.code == row["code"]).values(**row))
            written += 1
    if written:
        log.info("seeded %d region row(s)", written)
    return written
