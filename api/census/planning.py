"""What if: the census with a set of planned machines added, priced by the same compute model as reports.

Pure: a planned machine is an inventory (the document ``census-agent estimate`` reads: a report or a bare
inventory, its host optional), a count and a region; the compute model prices one machine, the plan becomes extra
rollup cells (counted as active nodes), and `api.census.arithmetic.aggregate` adds them to the current cells. The
before and after documents are then built exactly as ``GET /v1/census`` builds its own. Nothing here reads or
writes the database, the file system or the network: inventories are data handed in, never paths, and a plan is
never stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from api.census.arithmetic import PRECISION_FIELD, CensusResult, Region, RollupRow, ancestors, headline_flops
from api.census.headline import ai_share
from census_agent.models import NodeInventory, Precision, Tier
from census_agent.report import ComputeModel

PLANNED_STATUS = "active"  # a planned machine counts as a node that reports: every census view includes it


@dataclass(frozen=True, slots=True)
class PlannedMachine:
    """`count` machines like `inventory`, to be placed in `region`."""

    inventory: NodeInventory
    count: int
    region: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class PricedMachine:
    """A planned machine kind with the compute model's answer for one machine of it."""

    machine: PlannedMachine
    tier: Tier
    tier_reason: str
    peaks: dict[Precision, float]
    values: dict[str, float]  # one machine's rollup values (counts and peaks, `arithmetic.ALL_FIELDS`)


def machine_values(inventory: NodeInventory, peaks: Mapping[Precision, float]) -> dict[str, float]:
    """One machine's counts and peaks, as a node's rollup cell holds them (`api.ingest.pricing.node_state`)."""
    return {
        "nodes": 1.0,
        "physical_cores": float(inventory.cpu.physical_cores),
        "threads": float(inventory.cpu.threads),
        "accelerators": float(len(inventory.accelerators)),
        "memory_bytes": float(inventory.memory.total_bytes),
        **{PRECISION_FIELD[p]: peaks[p] for p in Precision},
    }


def price(machines: Iterable[PlannedMachine], model: ComputeModel) -> list[PricedMachine]:
    """Each planned machine kind priced by `model`, placed in its plan region (the inventory's own region label,
    if any, is replaced; its tier label, like an operator's, still overrides the tier rules)."""
    priced = []
    for machine in machines:
        labels = machine.inventory.labels.model_copy(update={"region": machine.region})
        inventory = machine.inventory.model_copy(update={"labels": labels})
        node_peaks, decision = model.assess(inventory)
        peaks = {p: node_peaks.figures[p].flops for p in Precision}
        priced.append(PricedMachine(machine, decision.tier, decision.reason, peaks, machine_values(inventory, peaks)))
    return priced


def planned_rows(priced: Iterable[PricedMachine]) -> list[RollupRow]:
    """The plan as rollup cells: one per machine kind, its one-machine values times its count."""
    return [
        RollupRow(
            p.tier.value,
            p.machine.region,
            PLANNED_STATUS,
            {name: value * p.machine.count for name, value in p.values.items()},
        )
        for p in priced
    ]


def machines_document(priced: Sequence[PricedMachine], convention: Mapping[Tier, Precision]) -> list[dict[str, Any]]:
    """What each planned machine kind was priced at: per machine, and times its count."""
    return [
        {
            "name": p.machine.name,
            "count": p.machine.count,
            "region": p.machine.region,
            "tier": p.tier.value,
            "tier_reason": p.tier_reason,
            "headline_precision": convention[p.tier].value,
            "per_machine_peak_flops": {prec.value: p.peaks[prec] for prec in Precision},
            "per_machine_headline_flops": p.peaks[convention[p.tier]],
            "added_headline_flops": p.peaks[convention[p.tier]] * p.machine.count,
        }
        for p in priced
    ]


def _region_figures(
    result: CensusResult, code: str, region: Region, convention: Mapping[Tier, Precision]
) -> dict[str, Any]:
    tiers = result.by_region_tier[code]
    total = headline_flops(tiers, convention)
    by_tier = {t.value: tiers[t.value].flops(convention[t]) for t in Tier}
    return {
        "nodes": int(result.by_region[code].values["nodes"]),
        "headline_flops": total,
        "per_capita_headline_flops": total / region.population if region.population else None,
        "ai_share": ai_share(by_tier, total),
        "by_tier_headline_flops": by_tier,
    }


def changed_regions(
    before: CensusResult,
    after: CensusResult,
    region_table: Mapping[str, Region],
    convention: Mapping[Tier, Precision],
    focus: str | None = None,
) -> list[dict[str, Any]]:
    """Every region (under `focus`, if given) whose figures the plan changes, with its figures before and after:
    headline, per capita, AI share, nodes."""
    changes = []
    for code, region in region_table.items():
        if focus is not None and focus not in ancestors(code, region_table):
            continue
        old = _region_figures(before, code, region, convention)
        new = _region_figures(after, code, region, convention)
        if old == new:
            continue
        changes.append(
            {
                "code": code,
                "parent_code": region.parent_code,
                "level": region.level,
                "name_zh": region.name_zh,
                "name_en": region.name_en,
                "population": region.population,
                "before": old,
                "after": new,
            }
        )
    return changes


def added_document(priced: Sequence[PricedMachine], convention: Mapping[Tier, Precision]) -> dict[str, Any]:
    """What the whole plan adds: machines, counts and the headline."""
    return {
        "machines": sum(p.machine.count for p in priced),
        "kinds": len(priced),
        "physical_cores": sum(int(p.values["physical_cores"]) * p.machine.count for p in priced),
        "accelerators": sum(int(p.values["accelerators"]) * p.machine.count for p in priced),
        "headline_flops": sum(p.peaks[convention[p.tier]] * p.machine.count for p in priced),
    }
