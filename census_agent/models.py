"""The node inventory and report model: the contract between the agent and the census service.

Pure data (pydantic, frozen): what a node is (`NodeInventory`), what it is worth (`NodePeaks`, `TierDecision`)
and the versioned `Report` document an agent pushes to ``/v1/reports``.  Units are SI base units in every
field name (``_bytes``, ``_hz``, ``_flops``).  This module must not touch the machine or the network: the
collectors fill it in, the compute model reads it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

REPORT_SCHEMA_VERSION: Literal[1] = 1

# Hard plausibility bounds: a report beyond them is malformed, not a big machine.
MAX_CORES = 1_000_000
MAX_BYTES = 2**60  # 1 EiB
MAX_CLOCK_HZ = 20e9
MAX_FLOPS = 1e20  # 100 EFLOPS for one node is already absurd
MAX_ACCELERATORS = 1024

# No control characters (NUL cannot even be stored in PostgreSQL text) in any free-text field.
Text = Annotated[str, StringConstraints(max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")]
ShortText = Annotated[str, StringConstraints(max_length=128, pattern=r"^[^\x00-\x1f\x7f]*$")]
TEXT_MAX = 256


def fit_text(text: str) -> str:
    """`text` cut to fit a `Text` field: notes and reasons the compute model writes quote model and interconnect
    names, each up to 256 characters long themselves."""
    return text if len(text) <= TEXT_MAX else text[: TEXT_MAX - 3] + "..."


RegionCode = Annotated[str, StringConstraints(pattern=r"^[0-9A-Z]{2,12}$")]
NodeId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
Count = Annotated[int, Field(ge=0, le=MAX_CORES)]
Bytes = Annotated[int, Field(ge=0, le=MAX_BYTES)]
Hz = Annotated[float, Field(ge=0, le=MAX_CLOCK_HZ)]
Flops = Annotated[float, Field(ge=0, le=MAX_FLOPS)]
MAX_WATTS = 1e7  # 10 MW for one node is already absurd
Watts = Annotated[float, Field(ge=0, le=MAX_WATTS)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class Frozen(BaseModel):
    """Base of every model here: immutable, and unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Tier(StrEnum):
    """Census tiers (算力构成): general 通用, AI 智算, supercomputing 超算, edge 边缘."""

    GENERAL = "general"
    AI = "ai"
    HPC = "hpc"
    EDGE = "edge"


class Precision(StrEnum):
    """Precisions a peak is given in. fp16 is dense tensor/matrix throughput; int8 is in ops, not FLOPs."""

    FP64 = "fp64"
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class Provenance(StrEnum):
    """How a figure was obtained."""

    CATALOGUE = "catalogue"  # vendor datasheet figure from the accelerator catalogue
    FORMULA = "formula"  # cores x clock x FLOPs per cycle
    DECLARED = "declared"  # stated by the operator in the agent's config
    MEASURED = "measured"  # a benchmark run on the node (Rmax, never used as a peak)
    UNPRICED = "unpriced"  # an accelerator found but not priceable (not in the catalogue, no formula): counted, 0


class ClockSource(StrEnum):
    """Where a CPU's base clock came from, best first."""

    DECLARED = "declared"
    SYSFS_BASE_FREQUENCY = "sysfs_base_frequency"
    MODEL_NAME = "model_name"
    ACPI_CPPC_NOMINAL = "acpi_cppc_nominal"
    CPUINFO_MAX_FREQ = "cpuinfo_max_freq"
    CPU_MHZ = "cpu_mhz"
    UNKNOWN = "unknown"


# --- inventory -----------------------------------------------------------------------------------------


class NumaNode(Frozen):
    """One NUMA node: which logical CPUs it holds and its memory."""

    node: Annotated[int, Field(ge=0, le=4096)]
    cpus: Annotated[list[Annotated[int, Field(ge=0, le=MAX_CORES)]], Field(max_length=MAX_CORES)]
    memory_total_bytes: Bytes
    memory_available_bytes: Bytes | None = None


class CpuInfo(Frozen):
    """The node's processors. Counts are totals over all sockets."""

    architecture: ShortText  # x86_64, aarch64, ...
    vendor: ShortText  # GenuineIntel, AuthenticAMD, HygonGenuine, ARM, HiSilicon, ...
    model_name: Text
    family: Annotated[int, Field(ge=0)] | None = None
    model: Annotated[int, Field(ge=0)] | None = None
    stepping: Annotated[int, Field(ge=0)] | None = None
    arm_part: Annotated[int, Field(ge=0)] | None = None  # MIDR part number on Arm (0xd0c = Neoverse N1)
    sockets: Annotated[int, Field(ge=1, le=4096)]
    physical_cores: Annotated[int, Field(ge=1, le=MAX_CORES)]
    threads: Annotated[int, Field(ge=1, le=MAX_CORES)]
    base_clock_hz: Hz | None
    max_clock_hz: Hz | None = None
    clock_source: ClockSource
    flags: Annotated[list[ShortText], Field(max_length=64)]  # only the ISA flags that matter for throughput
    numa_nodes: Annotated[list[NumaNode], Field(max_length=4096)] = []


class MemoryInfo(Frozen):
    """Main memory of the node."""

    total_bytes: Bytes
    available_bytes: Bytes


AcceleratorSource = Literal["nvml", "declared", "pci", "amdsmi", "npu-smi", "hy-smi", "cnmon"]
PciId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{4}$")]


class Accelerator(Frozen):
    """One accelerator: a GPU or NPU found on the PCI bus (named from the id table), by NVML or a vendor tool,
    or declared by the operator. `source` names what found it; PCI ids and NUMA node come from sysfs."""

    index: Annotated[int, Field(ge=0, le=MAX_ACCELERATORS)]
    vendor: ShortText
    model: Text
    uuid: ShortText | None = None
    memory_bytes: Bytes | None = None
    compute_capability: Annotated[str, StringConstraints(pattern=r"^\d{1,2}\.\d{1,2}$")] | None = None
    max_sm_clock_hz: Hz | None = None
    cuda_cores: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    pci_bus_id: ShortText | None = None
    mig_enabled: bool | None = None
    pci_vendor_id: PciId | None = None  # lower-case hex, e.g. "19e5" (Huawei)
    pci_device_id: PciId | None = None
    numa_node: Annotated[int, Field(ge=0, le=4096)] | None = None
    source: AcceleratorSource


class Interconnect(Frozen):
    """A high-performance network adapter (InfiniBand, RoCE, Slingshot...), the mark of an HPC node."""

    name: ShortText
    kind: ShortText  # infiniband, ethernet (RoCE), ...
    rate_bits_per_second: Annotated[float, Field(ge=0, le=1e13)] | None = None


class HostInfo(Frozen):
    """Identity of the node."""

    node_id: NodeId
    node_id_source: Literal["override", "machine-id", "hostname"]
    hostname: Text
    os: Text
    kernel: ShortText
    boot_time: datetime | None = None
    driver_version: ShortText | None = None  # the NVIDIA driver, where present


class DeclaredPeaks(Frozen):
    """Node-level peak figures stated by the operator; each replaces the computed figure it names."""

    fp64: Flops | None = None
    fp32: Flops | None = None
    fp16: Flops | None = None
    int8: Flops | None = None

    def get(self, precision: Precision) -> float | None:
        """The declared figure for `precision`, if any."""
        value: float | None = getattr(self, precision.value)
        return value


class Labels(Frozen):
    """What the operator says about the node (from the agent's config)."""

    region: RegionCode | None = None  # six-digit administrative code of the district, e.g. 440106
    organisation: ShortText | None = None
    site: ShortText | None = None
    tier: Tier | None = None  # overrides the classification rules
    declared_peaks: DeclaredPeaks = DeclaredPeaks()
    cpu_fp64_flops_per_cycle: Annotated[float, Field(gt=0, le=4096)] | None = None
    cpu_base_clock_hz: Annotated[float, Field(gt=0, le=MAX_CLOCK_HZ)] | None = None
    power_watts: Watts | None = None  # the node's declared power draw at load, where it cannot be read
    site_pue: Annotated[float, Field(ge=1.0, le=5.0)] | None = None  # the site's power usage effectiveness


class NodeInventory(Frozen):
    """Everything the agent knows about the node's hardware and identity."""

    host: HostInfo
    cpu: CpuInfo
    memory: MemoryInfo
    accelerators: Annotated[list[Accelerator], Field(max_length=MAX_ACCELERATORS)] = []
    interconnects: Annotated[list[Interconnect], Field(max_length=256)] = []
    labels: Labels = Labels()


# --- what the compute model derives ----------------------------------------------------------------------


class Figure(Frozen):
    """A throughput figure and how it was obtained."""

    flops: Flops
    provenance: Provenance


class ComponentPeaks(Frozen):
    """Peaks of one part of a node: the CPUs together, or one accelerator."""

    component: ShortText  # "cpu" or "accelerator:<index>"
    model: Text
    figures: dict[Precision, Figure]
    note: Text = ""


class NodeFigure(Frozen):
    """A node's peak in one precision: the figure used, how, and the computed value beside a declared one."""

    flops: Flops
    provenance: Provenance  # declared, or that of the largest contributor
    computed_flops: Flops


class NodePeaks(Frozen):
    """Peak (theoretical, Rpeak) throughput of the node per precision, with the parts it is made of."""

    figures: dict[Precision, NodeFigure]
    components: list[ComponentPeaks]


class TierDecision(Frozen):
    """The census tier of a node and the rule that chose it."""

    tier: Tier
    reason: Text
    overridden: bool = False


class Measurement(Frozen):
    """A measured dense matrix-multiply rate (Rmax-like), beside the peak it should be read against."""

    precision: Precision
    flops: Flops
    matrix_size: Annotated[int, Field(ge=1, le=100_000)]
    seconds: Annotated[float, Field(ge=0)]
    threads: Annotated[int, Field(ge=1, le=MAX_CORES)]


# --- what is in use (consumed), read each cycle ------------------------------------------------------------


class AcceleratorUsage(Frozen):
    """One accelerator's use over the last interval, matched to `Accelerator.index`; None where unreadable."""

    index: Annotated[int, Field(ge=0, le=MAX_ACCELERATORS)]
    utilisation: Fraction | None = None  # share of the interval the device was busy (NVML utilization.gpu)
    memory_used_bytes: Bytes | None = None
    power_watts: Watts | None = None  # current draw (NVML power usage)
    power_limit_watts: Watts | None = None  # enforced power limit


class PowerReading(Frozen):
    """Power the agent could read without privilege, and what the reading covers."""

    watts: Watts
    coverage: Literal["cpu-package", "accelerators"]  # RAPL package domains; NVML devices
    source: Literal["rapl", "nvml"]


class Usage(Frozen):
    """What the node consumed over the interval before `Report.generated_at` (Open XDMoD's "consumed" layer).

    `cpu_busy_cores` is cores busy on average (logical CPUs, from /proc/stat deltas); memory is used bytes
    (total - available).  Absent on an agent's first cycle (no interval yet) and from agents before it existed.
    """

    interval_seconds: Annotated[float, Field(gt=0, le=86_400)]
    cpu_busy_cores: Annotated[float, Field(ge=0, le=MAX_CORES)]
    memory_used_bytes: Bytes
    accelerators: Annotated[list[AcceleratorUsage], Field(max_length=MAX_ACCELERATORS)] = []
    power: Annotated[list[PowerReading], Field(max_length=8)] = []


class Report(Frozen):
    """The document an agent pushes to the census service (``POST /v1/reports``), schema version 1.

    `report_id` makes a replay idempotent; reports of a node are ordered by (`generated_at`, `sequence`): an
    older report never overwrites a newer state, and the service refuses reports dated in the future.  The
    service recomputes `peaks` and `tier` itself and keeps the agent's figures only for comparison.
    """

    schema_version: Literal[1] = REPORT_SCHEMA_VERSION
    report_id: UUID
    sequence: Annotated[int, Field(ge=0, lt=2**63)]
    generated_at: datetime
    agent_version: ShortText
    inventory: NodeInventory
    peaks: NodePeaks
    tier: TierDecision
    measurements: Annotated[list[Measurement], Field(max_length=16)] = []
    usage: Usage | None = None
