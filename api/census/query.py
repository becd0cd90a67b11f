"""Reading the census: rollups (current) and snapshots (history) turned into the API's documents.

Reads a handful of rollup rows and the cached region table, then calls the pure arithmetic in `api.census.arithmetic`;
the cost does not grow with the number of nodes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from api.census.allocation import allocation_series
from api.census.arithmetic import (
    CensusResult,
    Region,
    RollupRow,
    Totals,
    aggregate,
    ancestors,
    headline_flops,
    per_capita,
)
from api.census.headline import DEFAULT_AI_SHARE_TARGET, headline_extras
from api.census.utilisation import aggregate_held, history_layers
from api.db import aware
from api.db.tables import MEASURE_COLUMNS, regions, rollups, snapshots
from census_agent.models import Precision, Tier

VALUE_COLUMNS = ("nodes", *MEASURE_COLUMNS)


def load_regions(conn: Connection) -> dict[str, Region]:
    """The region table."""
    rows = conn.execute(select(regions)).mappings()
    return {
        r["code"]: Region(r["code"], r["parent_code"], r["level"], r["name_zh"], r["name_en"], r["population"])
        for r in rows
    }


def _rows(records: Iterable[Mapping[Any, Any]]) -> list[RollupRow]:
    return [
        RollupRow(r["tier"], r["region_code"], r["status"], {c: float(r[c] or 0) for c in VALUE_COLUMNS})
        for r in records
    ]


def load_rollups(conn: Connection) -> list[RollupRow]:
    """Every current rollup cell."""
    return _rows(conn.execute(select(rollups)).mappings())


def totals_document(totals: Totals) -> dict[str, Any]:
    """Counts and peaks of a set of nodes, as the API shows them."""
    v = totals.values
    return {
        "nodes": int(v["nodes"]),
        "physical_cores": int(v["physical_cores"]),
        "threads": int(v["threads"]),
        "accelerators": int(v["accelerators"]),
        "memory_bytes": int(v["memory_bytes"]),
        "peak_flops": {p.value: totals.flops(p) for p in Precision},
        "unpriced_accelerators": int(v.get("unpriced_accelerators", 0)),
    }


def _shares(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def census_document(
    result: CensusResult,
    *,
    region_table: Mapping[str, Region],
    convention: Mapping[Tier, Precision],
    statuses: list[str],
    as_of: datetime,
    focus: str | None = None,
    ai_share_target: float = DEFAULT_AI_SHARE_TARGET,
) -> dict[str, Any]:
    """The `GET /v1/census` document: headline, totals, composition by tier, regions with per-capita figures."""
    total_headline = headline_flops(result.by_tier, convention)
    by_tier = []
    for tier in Tier:
        totals = result.by_tier[tier.value]
        tier_headline = totals.flops(convention[tier])
        by_tier.append(
            {
                "tier": tier.value,
                "headline_precision": convention[tier].value,
                "headline_flops": tier_headline,
                "share_of_headline": _shares(tier_headline, total_headline),
                "share_by_precision": {p.value: _shares(totals.flops(p), result.total.flops(p)) for p in Precision},
                **totals_document(totals),
            }
        )
    by_region = []
    for code, region in region_table.items():
        if focus is not None and focus not in ancestors(code, region_table):
            continue
        totals = result.by_region[code]
        tiers = result.by_region_tier[code]
        region_headline = headline_flops(tiers, convention)
        by_region.append(
            {
                "code": code,
                "parent_code": region.parent_code,
                "level": region.level,
                "name_zh": region.name_zh,
                "name_en": region.name_en,
                "population": region.population,
                "headline_flops": region_headline,
                "per_capita_headline_flops": per_capita(region_headline, region.population),
                "per_capita_flops": {p.value: per_capita(totals.flops(p), region.population) for p in Precision},
                "by_tier": {t.value: totals_document(tiers[t.value]) for t in Tier},
                **totals_document(totals),
            }
        )
    return {
        "as_of": as_of.isoformat(),
        "statuses": statuses,
        "headline": {
            "flops": total_headline,
            "convention": {t.value: convention[t].value for t in Tier},
            "note": "tiers added at different precisions (a statistical convention); every precision is in totals",
            **headline_extras(
                convention, {t["tier"]: t["headline_flops"] for t in by_tier}, total_headline, ai_share_target
            ),
        },
        "totals": totals_document(result.total),
        "by_tier": by_tier,
        "by_region": by_region,
        "unassigned_region": totals_document(result.unassigned),
    }


def current_census(conn: Connection, statuses: list[str], region_table: Mapping[str, Region]) -> CensusResult:
    """Aggregate the current rollups over the given statuses."""
    return aggregate(load_rollups(conn), region_table, set(statuses))


def history_document(
    conn: Connection,
    *,
    region_table: Mapping[str, Region],
    convention: Mapping[Tier, Precision],
    statuses: list[str],
    since: datetime | None,
    until: datetime | None,
    region: str | None,
) -> dict[str, Any]:
    """`GET /v1/census/history`: one point per snapshot, and growth from the first to the last."""
    query = select(snapshots).order_by(snapshots.c.taken_at)
    if since is not None:
        query = query.where(snapshots.c.taken_at >= since)
    if until is not None:
        query = query.where(snapshots.c.taken_at <= until)
    by_time: dict[datetime, list[Mapping[Any, Any]]] = {}
    for row in conn.execute(query).mappings():
        by_time.setdefault(row["taken_at"], []).append(row)
    allocations = allocation_series(conn, since, until)
    points = []
    for taken_at, records in by_time.items():
        result = aggregate(_rows(records), region_table, set(statuses))
        tiers = result.by_region_tier[region] if region else result.by_tier
        totals = result.by_region[region] if region else result.total
        held = aggregate_held(allocations.get(aware(taken_at), []), region_table)
        points.append(
            {
                "taken_at": aware(taken_at).isoformat(),
                "headline_flops": headline_flops(tiers, convention),
                "by_tier_headline_flops": {t.value: tiers[t.value].flops(convention[t]) for t in Tier},
                **totals_document(totals),
                **history_layers(result, held, region, convention),
            }
        )
    growth = None
    if len(points) >= 2 and points[0]["headline_flops"]:
        first, last = points[0], points[-1]
        growth = {
            "from": first["taken_at"],
            "to": last["taken_at"],
            "headline_ratio": last["headline_flops"] / first["headline_flops"],
            "nodes_added": last["nodes"] - first["nodes"],
        }
    return {"region": region, "statuses": statuses, "points": points, "growth": growth}
