"""A generated fleet of node reports whose census totals are known by construction.

Every node is one of a few archetypes (hand-made `NodeInventory` objects).  Each archetype's tier and peak
figures per precision were derived BY HAND from the documented rules (README "The compute model" and "Tier
rules", ``census_agent/cpu_peaks.py``, ``seeds/accelerators.csv``); the derivation is written beside each one.
The expected census of any set of fleet nodes is then archetype figures x counts, summed by tier, by district
and up the region hierarchy (district -> 440100 Guangzhou -> 440000 Guangdong -> CN), never by calling the
compute model.  The reports themselves are built with ``census_agent.report.build_report`` (the agent's own
figures, which the service recomputes and does not trust).

Deterministic: node ``i`` of a fleet is always the same node (archetype, district, organisation, site), and a
report's id is derived from its node id and sequence number.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import httpx

from census_agent.models import (
    Accelerator,
    ClockSource,
    CpuInfo,
    DeclaredPeaks,
    HostInfo,
    Interconnect,
    Labels,
    MemoryInfo,
    NodeInventory,
    Precision,
    Report,
    Tier,
)
from census_agent.report import ComputeModel, build_report

GIB = 2**30
TERA = 1e12
GIGA = 1e9

FP64, FP32, FP16, INT8 = Precision.FP64, Precision.FP32, Precision.FP16, Precision.INT8

# Guangzhou's 11 districts (seeds/regions.csv), and the chain above them.
DISTRICTS: dict[str, str] = {
    "440103": "Liwan",
    "440104": "Yuexiu",
    "440105": "Haizhu",
    "440106": "Tianhe",
    "440111": "Baiyun",
    "440112": "Huangpu",
    "440113": "Panyu",
    "440114": "Huadu",
    "440115": "Nansha",
    "440117": "Conghua",
    "440118": "Zengcheng",
}
CITY, PROVINCE, COUNTRY = "440100", "440000", "CN"
ABOVE_DISTRICT = (CITY, PROVINCE, COUNTRY)
REGION_CODES = (*DISTRICTS, *ABOVE_DISTRICT)

ORGANISATIONS = ("gz-supercomputing-centre", "tianhe-ai-park", "city-edge-net", "sysu")

# The default headline convention: general and edge at fp32, ai at fp16, hpc at fp64.
DEFAULT_CONVENTION: dict[Tier, Precision] = {Tier.GENERAL: FP32, Tier.EDGE: FP32, Tier.AI: FP16, Tier.HPC: FP64}

BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
_ID_NAMESPACE = uuid.UUID("5a4e1c3e-0000-4000-8000-000000000003")


# --- figures ---------------------------------------------------------------------------------------------


@dataclass
class Figures:
    """Counts and peaks of a set of nodes (the expected side of a census comparison)."""

    nodes: int = 0
    physical_cores: int = 0
    threads: int = 0
    accelerators: int = 0
    memory_bytes: int = 0
    peaks: dict[Precision, float] = field(default_factory=lambda: dict.fromkeys(Precision, 0.0))

    def add(self, other: Figures) -> None:
        """Add another set's figures to these."""
        self.nodes += other.nodes
        self.physical_cores += other.physical_cores
        self.threads += other.threads
        self.accelerators += other.accelerators
        self.memory_bytes += other.memory_bytes
        for precision in Precision:
            self.peaks[precision] += other.peaks[precision]

    def counts(self) -> dict[str, int]:
        """The count fields, named as in the census document."""
        return {
            "nodes": self.nodes,
            "physical_cores": self.physical_cores,
            "threads": self.threads,
            "accelerators": self.accelerators,
            "memory_bytes": self.memory_bytes,
        }


# --- archetypes ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Archetype:
    """A kind of node: its hardware, the tier the rules give it, and its peaks derived by hand."""

    name: str
    cpu: CpuInfo
    memory_bytes: int
    tier: Tier
    peaks: Mapping[Precision, float]
    accelerators: tuple[Accelerator, ...] = ()
    interconnects: tuple[Interconnect, ...] = ()
    declared: DeclaredPeaks = field(default_factory=DeclaredPeaks)

    def figures(self) -> Figures:
        """One node of this archetype."""
        return Figures(
            nodes=1,
            physical_cores=self.cpu.physical_cores,
            threads=self.cpu.threads,
            accelerators=len(self.accelerators),
            memory_bytes=self.memory_bytes,
            peaks=dict(self.peaks),
        )


_ZEN3 = CpuInfo(
    architecture="x86_64",
    vendor="AuthenticAMD",
    model_name="AMD EPYC 7003-series 32-Core Processor",
    family=0x19,
    model=0x01,
    sockets=2,
    physical_cores=64,
    threads=128,
    base_clock_hz=2.45e9,
    clock_source=ClockSource.DECLARED,
    flags=["sse2", "avx", "avx2", "fma"],
)

# 64 cores x 2.45 GHz = 156.8e9 core-cycles/s.  AMD family 0x19 with AVX2+FMA and no AVX-512: Zen 3, 16 FP64
# FLOPs/cycle.  fp32 = 2 x fp64 = 32/cycle; fp16 = fp32 (no AVX-512 FP16/BF16, no AMX); int8 = 2 x fp32 = 64/cycle
# (no VNNI).
ZEN3_FP64 = 64 * 2.45e9 * 16  # 2.5088 TFLOPS
ZEN3_PEAKS = {FP64: ZEN3_FP64, FP32: 2 * ZEN3_FP64, FP16: 2 * ZEN3_FP64, INT8: 4 * ZEN3_FP64}

GENERAL = Archetype(
    name="general-zen3",
    cpu=_ZEN3,
    memory_bytes=512 * GIB,
    tier=Tier.GENERAL,  # no accelerator, no fabric, 64 cores > 4: general
    peaks=ZEN3_PEAKS,
)


def _h100(index: int) -> Accelerator:
    return Accelerator(index=index, vendor="NVIDIA", model="H100-SXM5", memory_bytes=80 * GIB, source="declared")


# The Zen 3 CPUs above plus 8 declared H100-SXM5.  Catalogue row H100-SXM5 (dense): fp64 max(34, 67) = 67 TFLOPS,
# fp32 67, fp16 tensor 989.5, int8 tensor 1979 TOPS.  Accelerators give 8 x 989.5 = 7,916 TFLOPS fp16 >= 20: ai.
AI = Archetype(
    name="ai-8xh100",
    cpu=_ZEN3,
    memory_bytes=2048 * GIB,
    tier=Tier.AI,
    accelerators=tuple(_h100(i) for i in range(8)),
    peaks={
        FP64: ZEN3_FP64 + 8 * 67 * TERA,
        FP32: 2 * ZEN3_FP64 + 8 * 67 * TERA,
        FP16: 2 * ZEN3_FP64 + 8 * 989.5 * TERA,
        INT8: 4 * ZEN3_FP64 + 8 * 1979 * TERA,
    },
)

# 2 x 40-core Xeon Platinum 8380 at 2.30 GHz = 184e9 core-cycles/s.  AVX-512 Intel, "Platinum": two FMA pipes,
# 32 FP64 FLOPs/cycle; fp32 64; fp16 = fp32 (no AVX-512 FP16/BF16, no AMX); int8 = 4 x fp32 = 256 (VNNI).
# An InfiniBand adapter and no accelerator: hpc.
HPC_FP64 = 80 * 2.30e9 * 32  # 5.888 TFLOPS
HPC = Archetype(
    name="hpc-xeon8380-ib",
    cpu=CpuInfo(
        architecture="x86_64",
        vendor="GenuineIntel",
        model_name="Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz",
        family=6,
        model=0x6A,
        sockets=2,
        physical_cores=80,
        threads=160,
        base_clock_hz=2.30e9,
        clock_source=ClockSource.MODEL_NAME,
        flags=["sse2", "avx", "avx2", "fma", "avx512f", "avx512_vnni"],
    ),
    memory_bytes=256 * GIB,
    tier=Tier.HPC,
    interconnects=(Interconnect(name="mlx5_0", kind="infiniband", rate_bits_per_second=200e9),),
    peaks={FP64: HPC_FP64, FP32: 2 * HPC_FP64, FP16: 2 * HPC_FP64, INT8: 8 * HPC_FP64},
)

# 4-core Core i3-10100 at 3.60 GHz: AVX2+FMA, 16 FP64 FLOPs/cycle; fp32 32; fp16 = fp32; int8 = 2 x fp32.
# 4 cores <= 4 and 8 GiB <= 16 GiB: edge.
EDGE_X86_FP64 = 4 * 3.6e9 * 16  # 230.4 GFLOPS
EDGE_X86 = Archetype(
    name="edge-i3",
    cpu=CpuInfo(
        architecture="x86_64",
        vendor="GenuineIntel",
        model_name="Intel(R) Core(TM) i3-10100 CPU @ 3.60GHz",
        family=6,
        model=0xA5,
        sockets=1,
        physical_cores=4,
        threads=8,
        base_clock_hz=3.6e9,
        clock_source=ClockSource.MODEL_NAME,
        flags=["sse2", "avx", "avx2", "fma"],
    ),
    memory_bytes=8 * GIB,
    tier=Tier.EDGE,
    peaks={FP64: EDGE_X86_FP64, FP32: 2 * EDGE_X86_FP64, FP16: 2 * EDGE_X86_FP64, INT8: 4 * EDGE_X86_FP64},
)

# 4 Arm Neoverse N1 cores (implementer ARM 0x41, part 0xd0c) at 2.0 GHz: 8 FP64 FLOPs/cycle; fp32 16; fp16 =
# 2 x fp32 = 32 (asimdhp); int8 = 4 x fp32 = 64 (asimddp).  4 cores and exactly 16 GiB (the bound, inclusive): edge.
EDGE_ARM_FP64 = 4 * 2.0e9 * 8  # 64 GFLOPS
EDGE_ARM = Archetype(
    name="edge-neoverse-n1",
    cpu=CpuInfo(
        architecture="aarch64",
        vendor="ARM",
        model_name="Neoverse-N1",
        arm_part=0xD0C,
        sockets=1,
        physical_cores=4,
        threads=4,
        base_clock_hz=2.0e9,
        clock_source=ClockSource.CPUINFO_MAX_FREQ,
        flags=["asimd", "asimdhp", "asimddp"],
    ),
    memory_bytes=16 * GIB,
    tier=Tier.EDGE,
    peaks={FP64: EDGE_ARM_FP64, FP32: 2 * EDGE_ARM_FP64, FP16: 4 * EDGE_ARM_FP64, INT8: 8 * EDGE_ARM_FP64},
)

# 16-core Zen 2 (family 0x17, model 0x31 >= 0x30) at 3.0 GHz: 16 FP64 FLOPs/cycle -> fp64 computed 0.768 TFLOPS,
# but the operator declares fp64 = 1.0 TFLOPS, which replaces it; fp32 = 32 x 48e9 = 1.536 TFLOPS; fp16 = fp32;
# int8 = 2 x fp32.  64 GiB, 16 cores: general.
ZEN2_CYCLES = 16 * 3.0e9
GENERAL_DECLARED = Archetype(
    name="general-zen2-declared-fp64",
    cpu=CpuInfo(
        architecture="x86_64",
        vendor="AuthenticAMD",
        model_name="AMD EPYC 7302 16-Core Processor",
        family=0x17,
        model=0x31,
        sockets=1,
        physical_cores=16,
        threads=32,
        base_clock_hz=3.0e9,
        clock_source=ClockSource.SYSFS_BASE_FREQUENCY,
        flags=["sse2", "avx", "avx2", "fma"],
    ),
    memory_bytes=64 * GIB,
    tier=Tier.GENERAL,
    declared=DeclaredPeaks(fp64=1.0 * TERA),
    peaks={FP64: 1.0 * TERA, FP32: 32 * ZEN2_CYCLES, FP16: 32 * ZEN2_CYCLES, INT8: 64 * ZEN2_CYCLES},
)

ARCHETYPES = (GENERAL, AI, HPC, EDGE_X86, EDGE_ARM, GENERAL_DECLARED)

# The mix, repeated every 20 nodes: 7 general, 1 general with a declared fp64, 2 ai, 3 hpc, 4 x86 edge, 3 Arm edge.
_PATTERN: tuple[Archetype, ...] = (
    GENERAL,
    EDGE_X86,
    HPC,
    GENERAL,
    EDGE_ARM,
    AI,
    GENERAL,
    EDGE_X86,
    HPC,
    GENERAL_DECLARED,
    GENERAL,
    EDGE_ARM,
    EDGE_X86,
    AI,
    GENERAL,
    HPC,
    EDGE_X86,
    GENERAL,
    EDGE_ARM,
    GENERAL,
)


# --- nodes and reports -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetNode:
    """One node of the fleet: an archetype with identity and labels."""

    index: int
    node_id: str
    archetype: Archetype
    region: str | None
    organisation: str
    site: str
    tier_label: Tier | None = None  # the operator's override of the tier rules

    @property
    def tier(self) -> Tier:
        """The tier the service must give it: the operator's label, else the archetype's (by the rules)."""
        return self.tier_label or self.archetype.tier

    def inventory(self) -> NodeInventory:
        """The node's inventory, as an agent would report it."""
        a = self.archetype
        return NodeInventory(
            host=HostInfo(
                node_id=self.node_id,
                node_id_source="override",
                hostname=f"{self.node_id}.{a.name}",
                os="Debian GNU/Linux 12 (bookworm)",
                kernel="6.1.0-18-amd64",
            ),
            cpu=a.cpu,
            memory=MemoryInfo(total_bytes=a.memory_bytes, available_bytes=a.memory_bytes // 2),
            accelerators=list(a.accelerators),
            interconnects=list(a.interconnects),
            labels=Labels(
                region=self.region,
                organisation=self.organisation,
                site=self.site,
                tier=self.tier_label,
                declared_peaks=a.declared,
            ),
        )

    def report(self, sequence: int = 1, *, generated_at: datetime | None = None) -> Report:
        """The node's report number `sequence` (later sequences are newer; the id is fixed by both), dated
        `sequence` seconds after `BASE_TIME` unless `generated_at` is given."""
        return build_report(
            self.inventory(),
            _model(),
            report_id=uuid.uuid5(_ID_NAMESPACE, f"{self.node_id}/{sequence}"),
            sequence=sequence,
            generated_at=generated_at or BASE_TIME + timedelta(seconds=sequence),
        )


@cache
def _model() -> ComputeModel:
    return ComputeModel()


def generate_fleet(
    n: int, *, prefix: str = "gz", start: int = 0, districts: Sequence[str] | None = None
) -> list[FleetNode]:
    """`n` nodes: archetypes in a fixed 20-node mix, districts round-robin (11 is prime to 20, so every archetype
    lands in every district), and every 37th node without a region label."""
    codes = list(districts if districts is not None else DISTRICTS)
    fleet = []
    for i in range(start, start + n):
        region = None if i % 37 == 36 else codes[i % len(codes)]
        fleet.append(
            FleetNode(
                index=i,
                node_id=f"{prefix}-{i:05d}",
                archetype=_PATTERN[i % len(_PATTERN)],
                region=region,
                organisation=ORGANISATIONS[(i // 3) % len(ORGANISATIONS)],
                site=f"site-{i % 7}",
            )
        )
    return fleet


def relabel(node: FleetNode, **changes: Any) -> FleetNode:
    """The node with new labels: ``region=`` (a district code or None) and/or ``tier_label=`` (a Tier or None)."""
    unknown = set(changes) - {"region", "tier_label"}
    if unknown:
        raise TypeError(f"relabel() changes only region and tier_label, not {sorted(unknown)}")
    return replace(node, **changes)


def reports(fleet: Iterable[FleetNode], sequence: int = 1) -> list[Report]:
    """One report per node, all with the same sequence number."""
    return [node.report(sequence) for node in fleet]


# --- the expected census ---------------------------------------------------------------------------------


@dataclass
class Expected:
    """The census of a set of fleet nodes, by construction."""

    total: Figures
    by_tier: dict[Tier, Figures]
    by_region: dict[str, Figures]  # every district, 440100, 440000 and CN, each including what lies below it
    by_region_tier: dict[str, dict[Tier, Figures]]
    unassigned: Figures

    def headline(self, convention: Mapping[Tier, Precision] = DEFAULT_CONVENTION) -> float:
        """Sum over tiers of each tier's peak in the convention's precision."""
        return headline_of(self.by_tier, convention)

    def region_headline(self, code: str, convention: Mapping[Tier, Precision] = DEFAULT_CONVENTION) -> float:
        """The headline of one region (with everything below it)."""
        return headline_of(self.by_region_tier[code], convention)


def headline_of(by_tier: Mapping[Tier, Figures], convention: Mapping[Tier, Precision] = DEFAULT_CONVENTION) -> float:
    """Sum over tiers of each tier's peak in the convention's precision."""
    return sum(by_tier[t].peaks[convention[t]] for t in Tier)


def expected_census(fleet: Iterable[FleetNode]) -> Expected:
    """Archetype figures x counts, summed overall, by tier, by region up the hierarchy and by region and tier."""
    expected = Expected(
        total=Figures(),
        by_tier={t: Figures() for t in Tier},
        by_region={code: Figures() for code in REGION_CODES},
        by_region_tier={code: {t: Figures() for t in Tier} for code in REGION_CODES},
        unassigned=Figures(),
    )
    for node in fleet:
        one = node.archetype.figures()
        expected.total.add(one)
        expected.by_tier[node.tier].add(one)
        if node.region is None:
            expected.unassigned.add(one)
            continue
        for code in (node.region, *ABOVE_DISTRICT):
            expected.by_region[code].add(one)
            expected.by_region_tier[code][node.tier].add(one)
    return expected


# --- posting ---------------------------------------------------------------------------------------------


def post_fleet(client: httpx.Client, reports: Sequence[Report], *, workers: int = 4) -> list[dict[str, Any]]:
    """POST every report to ``/v1/reports`` with `client` (which carries an admin token); the service's answers,
    in order.  Raises ``AssertionError`` naming the first report that was not accepted."""

    def post(report: Report) -> dict[str, Any]:
        response = client.post(
            "/v1/reports", content=report.model_dump_json(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 200, f"report {report.report_id}: {response.status_code} {response.text}"
        answer: dict[str, Any] = response.json()
        return answer

    if workers <= 1:
        return [post(r) for r in reports]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(post, reports))
