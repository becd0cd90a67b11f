"""``/v1/census``: the census document (totals, composition by tier, regions) and its history.

The documents are built by `api.census.query`; these models describe them key by key. The totals' fields are
repeated after the fields of a tier, a region or a point (rather than inherited, which would put them first)
because that is the answers' key order.

Must not: import anything but pydantic, the standard library and pure models (see `api.schemas`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from api.schemas.common import PeakFlops, Public, Timestamp, Totals
from census_agent.models import Precision, Tier


class Headline(Public):
    """The headline total: each tier at its convention's precision, added up."""

    flops: float
    convention: dict[Tier, Precision]
    note: str
    label_en: str = Field(description="what the total is, in English: each tier's peak in its own precision, added up")
    label_zh: str = Field(description="the same in Chinese (算力总规模)")
    convention_text: str = Field(
        description="the convention on one line, e.g. 'general fp32 + ai fp16 + hpc fp64 + edge fp32'"
    )
    ai_share: float | None = Field(
        description="智能算力占比: the ai tier's headline over the total; null when the total is 0"
    )
    ai_share_target: float = Field(description="the national target for the AI share (SUANLI_AI_SHARE_TARGET)")
    ai_share_target_source: str = Field(description="where the target comes from")


class TierPeaks(Public):
    """One tier's share of the census's peaks (what a what-if plan answers before and after)."""

    tier: Tier
    headline_precision: Precision
    headline_flops: float
    share_of_headline: float | None = Field(description="null when the headline total is 0")
    share_by_precision: dict[Precision, float | None]
    nodes: int
    physical_cores: int
    threads: int
    accelerators: int
    memory_bytes: int
    peak_flops: PeakFlops
    unpriced_accelerators: int


class TierCensus(TierPeaks):
    """One tier's share of the census, with its utilisation, the scheduler's demand and its energy."""

    utilisation: Utilisation
    demand: Demand
    energy: Energy


class RegionPeaks(Public):
    """One region (with every region below it) and its per-capita figures."""

    code: str
    parent_code: str | None
    level: str
    name_zh: str
    name_en: str
    population: int | None
    headline_flops: float
    per_capita_headline_flops: float | None = Field(description="null where the population is unknown")
    per_capita_flops: dict[Precision, float | None]
    by_tier: dict[Tier, Totals]
    nodes: int
    physical_cores: int
    threads: int
    accelerators: int
    memory_bytes: int
    peak_flops: PeakFlops
    unpriced_accelerators: int


class RegionCensus(RegionPeaks):
    """One region with its per-capita figures, utilisation and energy."""

    utilisation: Utilisation
    energy: Energy


class CensusPeaks(Public):
    """The headline, totals, composition by tier and regions with per-capita figures: the census's peaks, without
    the layers over time (a what-if plan's before and after)."""

    as_of: Timestamp
    statuses: list[str] = Field(description="the node statuses counted")
    headline: Headline
    totals: Totals
    by_tier: Sequence[TierPeaks]  # a Sequence, so that CensusPublic may narrow it
    by_region: Sequence[RegionPeaks]
    unassigned_region: Totals = Field(description="nodes without a region label")


class CensusPublic(CensusPeaks):
    """``GET /v1/census``: the census's peaks, and per tier and region the three layers (capacity, allocated,
    consumed), utilisation over a window, the scheduler's demand and energy."""

    by_tier: list[TierCensus]
    by_region: list[RegionCensus]
    window: UtilisationWindow
    utilisation: Utilisation = Field(description="the whole census: capacity, allocated and consumed")
    energy: Energy = Field(description="the whole census: power, peak GFLOPS per watt and energy over the window")
    allocated_unattributed: dict[Tier, Layer] = Field(
        description="what running jobs hold on nodes the census cannot name (their node ids match no census node)"
    )


class HistoryPoint(Public):
    """The census at one snapshot."""

    taken_at: Timestamp
    headline_flops: float
    by_tier_headline_flops: dict[Tier, float]
    nodes: int
    physical_cores: int
    threads: int
    accelerators: int
    memory_bytes: int
    peak_flops: PeakFlops
    unpriced_accelerators: int
    layers: LayersPoint
    by_tier_layers: dict[Tier, LayersPoint]


class Growth(Public):
    """From the first snapshot to the last."""

    since: Timestamp = Field(alias="from")
    to: Timestamp
    headline_ratio: float
    nodes_added: int


class HistoryPublic(Public):
    """``GET /v1/census/history``: one point per snapshot, and the growth from first to last."""

    region: str | None
    statuses: list[str]
    points: list[HistoryPoint]
    growth: Growth | None = Field(description="null with fewer than two points or a first headline of 0")


# --- utilisation and energy: the three layers (capacity, allocated, consumed) and power ------------------------


class Layer(Public):
    """One layer of compute at this moment: what exists (capacity), what Suanli's running jobs hold (allocated) or
    what the nodes report busy (consumed)."""

    cpus: float = Field(
        description="logical CPUs: capacity = threads; allocated = CPUs held by jobs; consumed = busy cores"
    )
    accelerators: float = Field(
        description="capacity = accelerators; allocated = GPUs held by jobs; consumed = sum of utilisation fractions"
    )
    memory_bytes: float
    headline_flops: float = Field(description="FLOPS at each tier's headline precision (the convention)")
    share_of_capacity: float | None = Field(description="headline_flops / capacity headline_flops; null when 0")


class LayerHours(Public):
    """A layer integrated over the window (each snapshot held until the next, see `UtilisationWindow.method`)."""

    cpu_hours: float = Field(description="logical-CPU hours")
    accelerator_hours: float = Field(description="accelerator (GPU/NPU) hours")
    headline_flops_hours: float = Field(description="headline FLOPS x hours (the FLOPS-weighted measure)")


class Ratios(Public):
    """A layer's hours over capacity hours, per resource; null where capacity hours are 0."""

    cpu: float | None = Field(description="core-hours: logical-CPU hours / available logical-CPU hours")
    accelerators: float | None = Field(description="GPU-hours: accelerator hours / available accelerator hours")
    compute: float | None = Field(description="FLOPS-weighted: headline FLOPS-hours / available FLOPS-hours")


class Utilisation(Public):
    """Open XDMoD's three layers: capacity (Resource Specifications), allocated (Jobs), consumed (measured);
    utilisation = consumed hours / available hours over the window."""

    capacity: Layer
    allocated: Layer
    consumed: Layer
    capacity_hours: LayerHours
    allocated_hours: LayerHours
    consumed_hours: LayerHours
    utilisation: Ratios = Field(description="consumed hours / capacity hours over the window")
    allocation: Ratios = Field(description="allocated hours / capacity hours over the window (XDMoD's Jobs realm)")
    nodes_reporting_usage: int = Field(description="counted nodes whose last report carried usage")


class Demand(Public):
    """The scheduler's unmet demand in a tier over the window."""

    jobs_dispatched: int = Field(description="jobs dispatched in the window")
    mean_wait_seconds: float | None = Field(description="mean of dispatched_at - submitted_at of those jobs")
    jobs_finished: int = Field(description="dispatched jobs that ended in the window")
    mean_run_seconds: float | None = Field(description="mean of finished_at - dispatched_at of those jobs")
    expansion_factor: float | None = Field(description="mean of (wait + run) / run over the jobs that ended")
    queued_now: int = Field(description="jobs waiting now with this home tier")
    mean_queued_wait_seconds: float | None = Field(description="how long they have waited so far, on average")


class Power(Public):
    """Power of the counted nodes now: each node counts once, measured where its readings cover it, else declared."""

    watts: float = Field(description="measured_watts + declared_watts (the nodes' own draw, before PUE)")
    provenance: Literal["measured", "declared", "mixed", "none"]
    measured_watts: float
    measured_nodes: int = Field(description="nodes counted as measured (partially_measured_nodes among them)")
    partially_measured_nodes: int = Field(
        description="measured nodes whose readings miss a part (accelerators without NVML power, or no RAPL) "
        "and that declare no power: their figure is below their draw"
    )
    declared_watts: float
    declared_nodes: int
    nodes_without_power: int = Field(description="neither readings nor a declared power_watts")
    facility_watts: float = Field(description="watts x the site's declared PUE (x 1 where none is declared)")
    pue_declared_nodes: int


class Energy(Public):
    """Power, peak efficiency and energy over the window."""

    power: Power
    headline_precision: Precision | None = Field(description="the precision of peak_gflops_per_watt; null: mixed")
    peak_gflops_per_watt: float | None = Field(
        description="peak GFLOPS/W at the headline precision (Green500's unit, but of peaks, not Rmax): "
        "the peak of the nodes with a power figure over their watts; null when none"
    )
    peak_fp64_gflops_per_watt: float | None = Field(description="the same in fp64 (Green500 measures FP64 Rmax/W)")
    energy_kwh: float = Field(description="the nodes' energy over the window (measured + declared), kWh")
    facility_energy_kwh: float = Field(description="energy_kwh with each site's PUE applied")


class UtilisationWindow(Public):
    """The window the hours, utilisation, demand and energy are computed over."""

    seconds: int
    since: Timestamp = Field(alias="from")
    to: Timestamp
    snapshots: int = Field(description="census snapshots in the window")
    covered_seconds: float = Field(description="seconds of the window the snapshots stand for")
    method: str


class LayersPoint(Public):
    """The three layers and power at one snapshot."""

    capacity_headline_flops: float
    allocated_headline_flops: float
    consumed_headline_flops: float
    capacity_cpus: float
    allocated_cpus: float
    consumed_cpus: float
    capacity_accelerators: float
    allocated_accelerators: float
    consumed_accelerators: float
    measured_watts: float
    declared_watts: float
    facility_watts: float


# The census models above name these later classes: resolve them now that they exist.
for _model in (TierCensus, RegionCensus, CensusPublic, HistoryPoint, HistoryPublic):
    _model.model_rebuild()
