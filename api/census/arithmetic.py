"""Census arithmetic: totals by tier and region, rolled up the region hierarchy, per capita, headline.

Pure: works on rollup rows and the region table handed to it, so a census query costs O(regions x tiers),
never O(nodes).  The headline total adds tiers at different precisions (general and edge at fp32, AI at
fp16, HPC at fp64 by default): that is a statistical convention, stated in every answer, not physics.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from census_agent.models import Precision, Tier

PRECISION_FIELD = {
    Precision.FP64: "fp64_flops",
    Precision.FP32: "fp32_flops",
    Precision.FP16: "fp16_flops",
    Precision.INT8: "int8_ops",
}
COUNT_FIELDS = ("nodes", "physical_cores", "threads", "accelerators", "memory_bytes")
ALL_FIELDS = (*COUNT_FIELDS, *PRECISION_FIELD.values())
UNASSIGNED = ""  # region code of nodes without a region label


@dataclass(frozen=True, slots=True)
class Region:
    """A region of the hierarchy."""

    code: str
    parent_code: str | None
    level: str
    name_zh: str
    name_en: str
    population: int | None


@dataclass(frozen=True, slots=True)
class RollupRow:
    """One (tier, region, status) cell of the rollups table."""

    tier: str
    region_code: str
    status: str
    values: Mapping[str, float]


@dataclass
class Totals:
    """Counts and peak figures of a set of nodes."""

    values: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ALL_FIELDS, 0.0))

    def add(self, other: Mapping[str, float]) -> None:
        """Add another set's figures to these (every figure it has: utilisation and power measures too)."""
        values = self.values
        for name, value in other.items():
            values[name] = values.get(name, 0.0) + value

    def flops(self, precision: Precision) -> float:
        """Peak in `precision`."""
        return self.values[PRECISION_FIELD[precision]]


@dataclass
class CensusResult:
    """Totals overall, by tier, and by region (each region including its descendants), by tier within region."""

    total: Totals
    by_tier: dict[str, Totals]
    by_region: dict[str, Totals]
    by_region_tier: dict[str, dict[str, Totals]]
    unassigned: Totals


def ancestors(code: str, regions: Mapping[str, Region]) -> list[str]:
    """`code` and every region above it, nearest first; stops at an unknown code or a cycle."""
    chain: list[str] = []
    current: str | None = code
    while current is not None and current in regions and current not in chain:
        chain.append(current)
        current = regions[current].parent_code
    return chain


def aggregate(rows: Iterable[RollupRow], regions: Mapping[str, Region], statuses: set[str]) -> CensusResult:
    """Sum the rollup cells of the given statuses overall, per tier, and per region up the hierarchy."""
    total = Totals()
    by_tier = {t.value: Totals() for t in Tier}
    by_region: dict[str, Totals] = {code: Totals() for code in regions}
    by_region_tier: dict[str, dict[str, Totals]] = {code: {t.value: Totals() for t in Tier} for code in regions}
    unassigned = Totals()
    for row in rows:
        if row.status not in statuses:
            continue
        total.add(row.values)
        by_tier.setdefault(row.tier, Totals()).add(row.values)
        chain = ancestors(row.region_code, regions) if row.region_code != UNASSIGNED else []
        if not chain:
            unassigned.add(row.values)
        for code in chain:
            by_region[code].add(row.values)
            by_region_tier[code].setdefault(row.tier, Totals()).add(row.values)
    return CensusResult(total, by_tier, by_region, by_region_tier, unassigned)


def headline_flops(by_tier: Mapping[str, Totals], convention: Mapping[Tier, Precision]) -> float:
    """The headline total: each tier's peak in the convention's precision for that tier, added up."""
    return sum(by_tier[t.value].flops(convention[t]) for t in Tier if t.value in by_tier)


def per_capita(flops: float, population: int | None) -> float | None:
    """FLOPS per resident, or None where the population is unknown."""
    return flops / population if population else None
