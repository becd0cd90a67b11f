"""Utilisation and energy arithmetic: the three layers (capacity, allocated, consumed), their hours over a window,
power, peak GFLOPS per watt and energy, per tier, per region and overall (issue 15; docs/census.md, Utilisation).

Pure: works on the census's `Totals` (whose values carry the usage measures of `api.db.tables.USAGE_COLUMNS`), on
what dispatched jobs hold (`Held`, read by `api.census.allocation`) and on snapshot times; it adds keys to the
documents `api.census.query` builds.  Definitions:

- capacity: logical CPUs (threads), accelerators, memory and headline FLOPS of the counted nodes;
- allocated: CPUs, GPUs and memory held by Suanli's dispatched jobs; as FLOPS, GPUs x the tier's mean headline per
  accelerator (the accelerators' part of its peak / its accelerators) + CPUs x its mean headline per logical CPU
  (the rest of its peak / its threads), both from the census of the same moment;
- consumed: busy logical CPUs, the sum of accelerator utilisation fractions, used memory, and consumed FLOPS (each
  node's peak scaled by its parts' utilisation, `api.ingest.usage`);
- hours: each snapshot in the window stands for the time until the next one (or now), at most `max_gap` seconds,
  so a gap in the snapshots (the service down) counts neither as available nor as used time;
- utilisation = consumed hours / capacity hours; allocation = allocated hours / capacity hours (Open XDMoD).

Must not: read the database or the clock (times are handed in).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from api.census.arithmetic import PRECISION_FIELD, CensusResult, Region, Totals, ancestors
from census_agent.models import Precision, Tier

UNATTRIBUTED = "unattributed"  # api.db.tables.UNATTRIBUTED: jobs on nodes the census does not know
LAYERS = ("capacity", "allocated", "consumed")
HOUR = 3600.0
WINDOW_METHOD = (
    "each census snapshot in the window stands for the time until the next snapshot (or now), at most one snapshot "
    "interval plus one sweep interval: a longer gap (the service down) counts neither as available nor as used "
    "time. Hours: logical-CPU hours, accelerator hours, and headline FLOPS x hours (FLOPS-weighted). Utilisation "
    "= consumed hours / capacity hours; allocation = allocated hours / capacity hours (Open XDMoD)."
)


@dataclass
class Held:
    """What dispatched jobs hold: jobs (each counted where its first node is), CPUs, GPUs and memory."""

    jobs: float = 0.0
    cpus: float = 0.0
    gpus: float = 0.0
    memory_bytes: float = 0.0

    def add(self, other: Held) -> None:
        """Add another holding to this one."""
        self.jobs += other.jobs
        self.cpus += other.cpus
        self.gpus += other.gpus
        self.memory_bytes += other.memory_bytes


@dataclass
class HeldResult:
    """Holdings per tier overall, per region (with the regions below it) and on nodes the census does not know."""

    by_tier: dict[str, Held] = field(default_factory=dict)
    by_region_tier: dict[str, dict[str, Held]] = field(default_factory=dict)
    unattributed: dict[str, Held] = field(default_factory=dict)


def aggregate_held(rows: Iterable[tuple[str, str, Held]], regions: Mapping[str, Region]) -> HeldResult:
    """Sum (tier, region code, holding) rows overall, up the region hierarchy, and for unattributed nodes."""
    result = HeldResult()
    for tier, code, held in rows:
        result.by_tier.setdefault(tier, Held()).add(held)
        if code == UNATTRIBUTED:
            result.unattributed.setdefault(tier, Held()).add(held)
            continue
        for region in ancestors(code, regions) if code else []:
            result.by_region_tier.setdefault(region, {}).setdefault(tier, Held()).add(held)
    return result


@dataclass
class LayerFigures:
    """One layer's figures at one moment."""

    cpus: float = 0.0
    accelerators: float = 0.0
    memory_bytes: float = 0.0
    headline_flops: float = 0.0


@dataclass
class PowerFigures:
    """Power of a set of nodes at one moment, with the peak of those that have a power figure."""

    measured_watts: float = 0.0
    declared_watts: float = 0.0
    facility_watts: float = 0.0
    measured_nodes: float = 0.0
    partial_nodes: float = 0.0
    declared_nodes: float = 0.0
    pue_nodes: float = 0.0
    nodes: float = 0.0
    powered_headline_flops: float = 0.0
    powered_fp64_flops: float = 0.0

    @property
    def watts(self) -> float:
        """Measured plus declared watts."""
        return self.measured_watts + self.declared_watts


@dataclass
class Moment:
    """The three layers and power of one level (the whole census, a tier, a region) at one moment."""

    layers: dict[str, LayerFigures]
    power: PowerFigures
    usage_nodes: float


def moment(
    tiers: Mapping[str, Totals],
    held: Mapping[str, Held],
    means: Mapping[str, Totals],
    convention: Mapping[Tier, Precision],
) -> Moment:
    """The layers and power of the nodes in `tiers` (per tier totals) and of the holdings `held`, converting
    holdings to FLOPS with the per-tier means of `means` (the whole census of the same moment)."""
    capacity, allocated, consumed, power = LayerFigures(), LayerFigures(), LayerFigures(), PowerFigures()
    usage_nodes = 0.0
    for tier in Tier:
        column = PRECISION_FIELD[convention[tier]]
        totals = tiers.get(tier.value)
        if totals is not None:
            v = totals.values
            capacity.cpus += v.get("threads", 0.0)
            capacity.accelerators += v.get("accelerators", 0.0)
            capacity.memory_bytes += v.get("memory_bytes", 0.0)
            capacity.headline_flops += v.get(column, 0.0)
            consumed.cpus += v.get("cpu_busy_cores", 0.0)
            consumed.accelerators += v.get("accelerators_busy", 0.0)
            consumed.memory_bytes += v.get("memory_used_bytes", 0.0)
            consumed.headline_flops += v.get(f"consumed_{column}", 0.0)
            usage_nodes += v.get("usage_nodes", 0.0)
            power.measured_watts += v.get("measured_watts", 0.0)
            power.declared_watts += v.get("declared_watts", 0.0)
            power.facility_watts += v.get("facility_watts", 0.0)
            power.measured_nodes += v.get("measured_power_nodes", 0.0)
            power.partial_nodes += v.get("partial_power_nodes", 0.0)
            power.declared_nodes += v.get("declared_power_nodes", 0.0)
            power.pue_nodes += v.get("pue_nodes", 0.0)
            power.nodes += v.get("nodes", 0.0)
            power.powered_headline_flops += v.get(f"powered_{column}", 0.0)
            power.powered_fp64_flops += v.get("powered_fp64_flops", 0.0)
        holding = held.get(tier.value)
        if holding is not None:
            per_accelerator, per_cpu = tier_means(means.get(tier.value), column)
            allocated.cpus += holding.cpus
            allocated.accelerators += holding.gpus
            allocated.memory_bytes += holding.memory_bytes
            allocated.headline_flops += holding.gpus * per_accelerator + holding.cpus * per_cpu
    return Moment({"capacity": capacity, "allocated": allocated, "consumed": consumed}, power, usage_nodes)


def tier_means(totals: Totals | None, column: str) -> tuple[float, float]:
    """A tier's mean peak (in `column`) per accelerator and per logical CPU: the accelerators' part of its peak over
    its accelerators, and the rest over its threads (0 where it has none)."""
    if totals is None:
        return 0.0, 0.0
    v = totals.values
    accelerator_part = v.get(f"accelerator_{column}", 0.0)
    accelerators, threads = v.get("accelerators", 0.0), v.get("threads", 0.0)
    cpu_part = max(0.0, v.get(column, 0.0) - accelerator_part)
    return (accelerator_part / accelerators if accelerators else 0.0, cpu_part / threads if threads else 0.0)


# --- over a window -------------------------------------------------------------------------------------------


def weights(times: Sequence[datetime], now: datetime, max_gap: float) -> list[float]:
    """Seconds each snapshot stands for: until the next one (the last: until `now`), at most `max_gap`."""
    ends = [*times[1:], now] if times else []
    return [max(0.0, min((end - start).total_seconds(), max_gap)) for start, end in zip(times, ends, strict=True)]


@dataclass
class HeldPoint:
    """What jobs held at one snapshot, the hours it stands for, and each tier's (per accelerator, per logical CPU)
    mean headline peak at that snapshot (to convert the holdings to FLOPS)."""

    hours: float
    held: HeldResult
    means: dict[str, tuple[float, float]]


@dataclass
class Window:
    """The snapshots of a window, reduced: capacity, consumed and power are linear in the snapshots' figures, so the
    census's cells are summed once with each snapshot's figures x the hours it stands for (`hour_weighted`);
    allocated FLOPS depend on each snapshot's means, so the holdings are kept per snapshot (few: only where jobs
    ran)."""

    hour_weighted: CensusResult
    held: list[HeldPoint]


def tier_means_of(
    by_tier: Mapping[str, Totals], convention: Mapping[Tier, Precision]
) -> dict[str, tuple[float, float]]:
    """`tier_means` of every tier (the census's totals per tier), at the tier's headline precision."""
    return {t.value: tier_means(by_tier.get(t.value), PRECISION_FIELD[convention[t]]) for t in Tier}


@dataclass
class Hours:
    """A level's layers integrated over the window, and its energy."""

    layers: dict[str, LayerFigures] = field(default_factory=lambda: {name: LayerFigures() for name in LAYERS})
    energy_wh: float = 0.0
    facility_energy_wh: float = 0.0


Level = Callable[[CensusResult, HeldResult], tuple[Mapping[str, Totals], Mapping[str, Held]]]
NO_HOLDINGS = HeldResult()


def integrate(window: Window, level: Level, convention: Mapping[Tier, Precision]) -> Hours:
    """A level's hours and energy over the window."""
    tiers, _ = level(window.hour_weighted, NO_HOLDINGS)
    weighted = moment(tiers, {}, {}, convention)  # figures x hours: capacity and consumed hours, watt-hours
    allocated = LayerFigures()
    for point in window.held:
        _, holdings = level(window.hour_weighted, point.held)
        for tier, h in holdings.items():
            per_accelerator, per_cpu = point.means.get(tier, (0.0, 0.0))
            allocated.cpus += h.cpus * point.hours
            allocated.accelerators += h.gpus * point.hours
            allocated.memory_bytes += h.memory_bytes * point.hours
            allocated.headline_flops += (h.gpus * per_accelerator + h.cpus * per_cpu) * point.hours
    layers = {"capacity": weighted.layers["capacity"], "allocated": allocated, "consumed": weighted.layers["consumed"]}
    return Hours(layers, weighted.power.watts, weighted.power.facility_watts)


def total_level(census: CensusResult, held: HeldResult) -> tuple[Mapping[str, Totals], Mapping[str, Held]]:
    """The whole census, and every holding (unattributed ones included)."""
    return census.by_tier, held.by_tier


def tier_level(tier: str) -> Level:
    """One tier."""

    def select(census: CensusResult, held: HeldResult) -> tuple[Mapping[str, Totals], Mapping[str, Held]]:
        totals, holding = census.by_tier.get(tier), held.by_tier.get(tier)
        return ({tier: totals} if totals else {}), ({tier: holding} if holding else {})

    return select


def region_level(code: str) -> Level:
    """One region with the regions below it."""

    def select(census: CensusResult, held: HeldResult) -> tuple[Mapping[str, Totals], Mapping[str, Held]]:
        return census.by_region_tier.get(code, {}), held.by_region_tier.get(code, {})

    return select


# --- documents -----------------------------------------------------------------------------------------------


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def layer_document(figures: LayerFigures, capacity: LayerFigures) -> dict[str, Any]:
    """`api.schemas.census.Layer`."""
    return {
        "cpus": figures.cpus,
        "accelerators": figures.accelerators,
        "memory_bytes": figures.memory_bytes,
        "headline_flops": figures.headline_flops,
        "share_of_capacity": _ratio(figures.headline_flops, capacity.headline_flops),
    }


def _hours_document(figures: LayerFigures) -> dict[str, float]:
    return {
        "cpu_hours": figures.cpus,
        "accelerator_hours": figures.accelerators,
        "headline_flops_hours": figures.headline_flops,
    }


def _ratios(part: LayerFigures, whole: LayerFigures) -> dict[str, float | None]:
    return {
        "cpu": _ratio(part.cpus, whole.cpus),
        "accelerators": _ratio(part.accelerators, whole.accelerators),
        "compute": _ratio(part.headline_flops, whole.headline_flops),
    }


def utilisation_document(now: Moment, hours: Hours) -> dict[str, Any]:
    """`api.schemas.census.Utilisation`: the layers now, their hours over the window and the ratios."""
    capacity = now.layers["capacity"]
    spent = hours.layers
    return {
        "capacity": layer_document(capacity, capacity),
        "allocated": layer_document(now.layers["allocated"], capacity),
        "consumed": layer_document(now.layers["consumed"], capacity),
        "capacity_hours": _hours_document(spent["capacity"]),
        "allocated_hours": _hours_document(spent["allocated"]),
        "consumed_hours": _hours_document(spent["consumed"]),
        "utilisation": _ratios(spent["consumed"], spent["capacity"]),
        "allocation": _ratios(spent["allocated"], spent["capacity"]),
        "nodes_reporting_usage": round(now.usage_nodes),
    }


def provenance(power: PowerFigures) -> str:
    """measured, declared, mixed, or none: where the power figure of a set of nodes comes from."""
    if power.measured_nodes and power.declared_nodes:
        return "mixed"
    if power.measured_nodes:
        return "measured"
    return "declared" if power.declared_nodes else "none"


def energy_document(now: Moment, hours: Hours, precision: Precision | None) -> dict[str, Any]:
    """`api.schemas.census.Energy`: power now with its provenance, peak GFLOPS per watt, energy over the window."""
    p = now.power
    watts = p.watts
    return {
        "power": {
            "watts": watts,
            "provenance": provenance(p),
            "measured_watts": p.measured_watts,
            "measured_nodes": round(p.measured_nodes),
            "partially_measured_nodes": round(p.partial_nodes),
            "declared_watts": p.declared_watts,
            "declared_nodes": round(p.declared_nodes),
            "nodes_without_power": round(p.nodes - p.measured_nodes - p.declared_nodes),
            "facility_watts": p.facility_watts,
            "pue_declared_nodes": round(p.pue_nodes),
        },
        "headline_precision": precision.value if precision is not None else None,
        "peak_gflops_per_watt": p.powered_headline_flops / 1e9 / watts if watts else None,
        "peak_fp64_gflops_per_watt": p.powered_fp64_flops / 1e9 / watts if watts else None,
        "energy_kwh": hours.energy_wh / 1000.0,
        "facility_energy_kwh": hours.facility_energy_wh / 1000.0,
    }


def layers_point(now: Moment) -> dict[str, float]:
    """`api.schemas.census.LayersPoint`: the layers and power of one level at one snapshot."""
    capacity, allocated, consumed = (now.layers[name] for name in LAYERS)
    return {
        "capacity_headline_flops": capacity.headline_flops,
        "allocated_headline_flops": allocated.headline_flops,
        "consumed_headline_flops": consumed.headline_flops,
        "capacity_cpus": capacity.cpus,
        "allocated_cpus": allocated.cpus,
        "consumed_cpus": consumed.cpus,
        "capacity_accelerators": capacity.accelerators,
        "allocated_accelerators": allocated.accelerators,
        "consumed_accelerators": consumed.accelerators,
        "measured_watts": now.power.measured_watts,
        "declared_watts": now.power.declared_watts,
        "facility_watts": now.power.facility_watts,
    }


@dataclass
class Inputs:
    """What the utilisation sections of a census document are computed from."""

    census: CensusResult  # now
    held: HeldResult  # now
    window: Window  # the snapshots in the window
    demand: Mapping[str, dict[str, Any]]  # per tier (`api.census.allocation.demand`)
    description: dict[str, Any]  # `api.schemas.census.UtilisationWindow`


def add_utilisation(
    document: dict[str, Any], inputs: Inputs, *, regions: Mapping[str, Region], convention: Mapping[Tier, Precision]
) -> dict[str, Any]:
    """Add the utilisation, demand and energy sections to a `GET /v1/census` document (`census_document`'s), per
    tier, per region listed and overall; returns it."""
    census, held = inputs.census, inputs.held
    means = census.by_tier

    def sections(level: Level, precision: Precision | None) -> tuple[dict[str, Any], dict[str, Any]]:
        now = moment(*level(census, held), means, convention)
        hours = integrate(inputs.window, level, convention)
        return utilisation_document(now, hours), energy_document(now, hours, precision)

    for entry in document["by_tier"]:
        tier = Tier(entry["tier"])
        utilisation, energy = sections(tier_level(tier.value), convention[tier])
        entry["utilisation"] = utilisation
        entry["demand"] = dict(inputs.demand.get(tier.value) or _no_demand())
        entry["energy"] = energy
    for entry in document["by_region"]:
        utilisation, energy = sections(region_level(entry["code"]), None)
        entry["utilisation"] = utilisation
        entry["energy"] = energy
    utilisation, energy = sections(total_level, None)
    document["window"] = inputs.description
    document["utilisation"] = utilisation
    document["energy"] = energy
    capacity = {t: moment(*tier_level(t.value)(census, held), means, convention) for t in Tier}
    document["allocated_unattributed"] = {
        t.value: layer_document(
            moment({}, {t.value: inputs.held.unattributed.get(t.value, Held())}, means, convention).layers["allocated"],
            capacity[t].layers["capacity"],
        )
        for t in Tier
    }
    return document


def region_tier_sections(
    inputs: Inputs, code: str, tier: Tier, convention: Mapping[Tier, Precision]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The utilisation and energy sections of one tier within one region (the CSV export's rows)."""

    def level(census: CensusResult, held: HeldResult) -> tuple[Mapping[str, Totals], Mapping[str, Held]]:
        totals = census.by_region_tier.get(code, {}).get(tier.value)
        holding = held.by_region_tier.get(code, {}).get(tier.value)
        return ({tier.value: totals} if totals else {}), ({tier.value: holding} if holding else {})

    now = moment(*level(inputs.census, inputs.held), inputs.census.by_tier, convention)
    hours = integrate(inputs.window, level, convention)
    return utilisation_document(now, hours), energy_document(now, hours, convention[tier])


def _no_demand() -> dict[str, Any]:
    return {
        "jobs_dispatched": 0,
        "mean_wait_seconds": None,
        "jobs_finished": 0,
        "mean_run_seconds": None,
        "expansion_factor": None,
        "queued_now": 0,
        "mean_queued_wait_seconds": None,
    }


def history_layers(
    census: CensusResult, held: HeldResult, region: str | None, convention: Mapping[Tier, Precision]
) -> dict[str, Any]:
    """The `layers` and `by_tier_layers` of a history point (of `region`, or overall)."""
    means = census.by_tier
    if region is None:
        level: Level = total_level
        tiers, holdings = census.by_tier, held.by_tier
    else:
        level = region_level(region)
        tiers, holdings = census.by_region_tier.get(region, {}), held.by_region_tier.get(region, {})
    by_tier = {}
    for t in Tier:
        totals, holding = tiers.get(t.value), holdings.get(t.value)
        by_tier[t.value] = layers_point(
            moment({t.value: totals} if totals else {}, {t.value: holding} if holding else {}, means, convention)
        )
    return {"layers": layers_point(moment(*level(census, held), means, convention)), "by_tier_layers": by_tier}
