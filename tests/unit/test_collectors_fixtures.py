"""The collectors and the compute model against the /proc, /sys and /etc trees of four real server types.

The trees are written by ``tests/fixtures/hosts/generate.py`` (see its docstring for where each machine's
facts come from).  Every expected value below is a fact about the machine or a figure worked out by hand from
``shared/reference/compute-methodology.md``, never a number the code printed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from census_agent.collectors.cpu import collect_cpu
from census_agent.collectors.host import collect_host
from census_agent.collectors.inventory import collect_inventory
from census_agent.collectors.memory import collect_memory
from census_agent.collectors.network import collect_interconnects
from census_agent.models import ClockSource, Labels, NodeInventory, Precision, Provenance, Tier
from census_agent.report import ComputeModel

HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"
GIB = 2**30
GHZ = 1e9


@dataclass(frozen=True)
class Host:
    """What is true of one fixture machine, and the figures worked out by hand for it."""

    name: str
    architecture: str
    vendor: str
    model_name: str
    family: int | None
    model: int | None
    arm_part: int | None
    sockets: int
    physical_cores: int
    threads: int
    base_clock_hz: float
    max_clock_hz: float | None
    clock_source: ClockSource
    flags: frozenset[str]
    numa_cpus: tuple[frozenset[int], ...]
    numa_mem_total_kib: tuple[int, ...]
    mem_total_kib: int
    installed_gib: int
    hostname: str
    machine_id: str
    os: str
    kernel: str
    boot_time: datetime
    interconnects: tuple[tuple[str, str, float | None], ...]
    fp64_flops: float
    fp32_flops: float
    tier: Tier


def _cpus(*ranges: range) -> frozenset[int]:
    return frozenset(cpu for r in ranges for cpu in r)


# Rpeak = sockets x cores per socket x base clock x FP64 FLOPs per cycle per core (TOP500 convention, base
# clock not turbo); FP32 is twice the FP64 rate ("FP32 is twice these", methodology CPU table).

# Xeon Platinum: AVX-512 with 2 FMA pipes -> 2 pipes x (512 / 64) lanes x 2 (FMA) = 32 FP64 FLOPs/cycle.
XEON_8380_FP64 = 2 * 40 * (2.3 * GHZ) * (2 * (512 // 64) * 2)  # 5,888 GFLOPS
# AMD Zen 4: 512-bit ops on 256-bit pipes -> 2 x (256 / 64) x 2 = 16 FP64 FLOPs/cycle.
EPYC_9654_FP64 = 1 * 96 * (2.4 * GHZ) * (2 * (256 // 64) * 2)  # 3,686.4 GFLOPS
# Arm Neoverse N1: 2 x 128-bit -> 2 x (128 / 64) x 2 = 8 FP64 FLOPs/cycle.
ALTRA_Q80_30_FP64 = 1 * 80 * (3.0 * GHZ) * (2 * (128 // 64) * 2)  # 1,920 GFLOPS
# AVX without FMA (Ivy Bridge): 8 FP64 FLOPs/cycle (a 256-bit add and a 256-bit multiply per cycle);
# the methodology's worked example is one such 12-core 2.2 GHz socket = 211.2 GFLOPS.
IVY_BRIDGE_FP64 = 2 * 12 * (2.2 * GHZ) * 8  # 422.4 GFLOPS

XEON_8380 = Host(
    name="xeon-platinum-8380-2s",
    architecture="x86_64",
    vendor="GenuineIntel",
    model_name="Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz",
    family=6,
    model=0x6A,
    arm_part=None,
    sockets=2,
    physical_cores=2 * 40,
    threads=2 * 40 * 2,
    base_clock_hz=2.3 * GHZ,
    max_clock_hz=3.4 * GHZ,
    clock_source=ClockSource.SYSFS_BASE_FREQUENCY,
    flags=frozenset({"sse2", "avx", "avx2", "fma", "avx512f", "avx512_vnni"}),
    numa_cpus=(_cpus(range(40), range(80, 120)), _cpus(range(40, 80), range(120, 160))),
    numa_mem_total_kib=(263566396, 264207020),
    mem_total_kib=527773416,
    installed_gib=512,
    hostname="hpc-cn0417",
    machine_id="3f9c2a61d84e4b07a5c1e6d2b8f04a93",
    os="Rocky Linux 8.9 (Green Obsidian)",
    kernel="4.18.0-513.5.1.el8_9.x86_64",
    boot_time=datetime(2024, 2, 7, 9, 16, 0, tzinfo=UTC),  # btime 1707297360
    interconnects=(("mlx5_0", "infiniband", 200e9),),
    fp64_flops=XEON_8380_FP64,
    fp32_flops=2 * XEON_8380_FP64,
    tier=Tier.HPC,  # rule 2: an InfiniBand adapter (tier_rules.toml hpc_interconnect_kinds)
)

EPYC_9654 = Host(
    name="epyc-9654-zen4",
    architecture="x86_64",
    vendor="AuthenticAMD",
    model_name="AMD EPYC 9654 96-Core Processor",
    family=0x19,
    model=0x11,
    arm_part=None,
    sockets=1,
    physical_cores=96,
    threads=192,
    base_clock_hz=2.4 * GHZ,
    max_clock_hz=2.4 * GHZ,
    clock_source=ClockSource.CPUINFO_MAX_FREQ,
    flags=frozenset({"sse2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni"}),
    numa_cpus=(_cpus(range(192)),),
    numa_mem_total_kib=(395869628,),
    mem_total_kib=395869628,
    installed_gib=384,
    hostname="gp-r7625-031",
    machine_id="a07e5d3c91b24f6e8d2c0b4f7a9e1c58",
    os="Ubuntu 22.04.4 LTS",
    kernel="5.15.0-97-generic",
    boot_time=datetime(2024, 3, 4, 8, 30, 21, tzinfo=UTC),  # btime 1709541021
    interconnects=(),
    fp64_flops=EPYC_9654_FP64,
    fp32_flops=2 * EPYC_9654_FP64,
    tier=Tier.GENERAL,  # no accelerator, no fabric, 96 cores > edge_max_physical_cores (4)
)

ALTRA_Q80_30 = Host(
    name="ampere-altra-q80-30",
    architecture="aarch64",
    vendor="ARM",
    model_name="Arm Neoverse N1",
    family=None,
    model=None,
    arm_part=0xD0C,
    sockets=1,
    physical_cores=80,
    threads=80,
    base_clock_hz=3.0 * GHZ,
    max_clock_hz=3.0 * GHZ,
    clock_source=ClockSource.CPUINFO_MAX_FREQ,
    flags=frozenset({"asimd", "asimdhp", "asimddp", "fphp"}),
    numa_cpus=(_cpus(range(80)),),
    numa_mem_total_kib=(263582232,),
    mem_total_kib=263582232,
    installed_gib=256,
    hostname="arm-altra-07",
    machine_id="5b1d8e0f2a6c4d93b7e4f1a0c3d2e6b9",
    os="Debian GNU/Linux 12 (bookworm)",
    kernel="6.1.0-18-arm64",
    boot_time=datetime(2024, 3, 19, 10, 11, 52, tzinfo=UTC),  # btime 1710843112
    interconnects=(),
    fp64_flops=ALTRA_Q80_30_FP64,
    fp32_flops=2 * ALTRA_Q80_30_FP64,
    tier=Tier.GENERAL,  # 80 cores and 256 GiB: far above the edge bounds
)

IVY_BRIDGE = Host(
    name="xeon-e5-2692v2-ivybridge",
    architecture="x86_64",
    vendor="GenuineIntel",
    model_name="Intel(R) Xeon(R) CPU E5-2692 v2 @ 2.20GHz",
    family=6,
    model=62,
    arm_part=None,
    sockets=2,
    physical_cores=2 * 12,
    threads=2 * 12 * 2,
    base_clock_hz=2.2 * GHZ,
    max_clock_hz=None,  # no cpufreq directory
    clock_source=ClockSource.MODEL_NAME,
    flags=frozenset({"sse2", "avx"}),
    numa_cpus=(_cpus(range(12), range(24, 36)), _cpus(range(12, 24), range(36, 48))),
    numa_mem_total_kib=(32661676, 33179460),
    mem_total_kib=65841136,
    installed_gib=64,
    hostname="legacy-ivb-12",
    machine_id="c4e2a9b70d3f4815a6e9d0c1b2f37a84",
    os="CentOS Linux 7 (Core)",
    kernel="3.10.0-1160.el7.x86_64",
    boot_time=datetime(2023, 10, 1, 4, 26, 40, tzinfo=UTC),  # btime 1696134400
    interconnects=(),
    fp64_flops=IVY_BRIDGE_FP64,
    fp32_flops=2 * IVY_BRIDGE_FP64,
    tier=Tier.GENERAL,  # 24 cores, 64 GiB: not an edge node
)

ALL_HOSTS = [XEON_8380, EPYC_9654, ALTRA_Q80_30, IVY_BRIDGE]
BY_NAME = pytest.mark.parametrize("host", ALL_HOSTS, ids=[h.name for h in ALL_HOSTS])


def _root(host: Host) -> Path:
    root = HOSTS / host.name
    assert (root / "proc" / "cpuinfo").is_file(), f"run tests/fixtures/hosts/generate.py: {root} is missing"
    return root


def _inventory(host: Host, labels: Labels | None = None) -> NodeInventory:
    inventory, scan = collect_inventory(
        _root(host), labels=labels or Labels(), declared_accelerators=[], node_id=None, nvml=None
    )
    assert scan.accelerators == []
    return inventory


# --- collectors ---------------------------------------------------------------------------------------------


@BY_NAME
def test_collect_cpu_reads_identity_of_each_fixture_machine(host: Host) -> None:
    """Architecture, vendor, model name and the x86 family/model or the Arm part number come out right."""
    cpu = collect_cpu(_root(host))
    assert cpu.architecture == host.architecture
    assert cpu.vendor == host.vendor
    assert cpu.model_name == host.model_name
    assert (cpu.family, cpu.model) == (host.family, host.model)
    assert cpu.arm_part == host.arm_part


@BY_NAME
def test_collect_cpu_counts_sockets_cores_and_threads_from_sysfs_topology(host: Host) -> None:
    """Sockets and physical cores are distinct (package, core_id) pairs; threads are the online CPUs."""
    cpu = collect_cpu(_root(host))
    assert cpu.sockets == host.sockets
    assert cpu.physical_cores == host.physical_cores
    assert cpu.threads == host.threads


def test_collect_cpu_counts_non_contiguous_core_ids_per_socket() -> None:
    """Ivy Bridge-EP numbers its 12 cores 0-5 and 8-13 in each package: 24 cores, not 14 distinct ids."""
    root = _root(IVY_BRIDGE)
    core_ids = {
        int((root / f"sys/devices/system/cpu/cpu{n}/topology/core_id").read_text()) for n in range(IVY_BRIDGE.threads)
    }
    assert core_ids == {0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13}
    assert collect_cpu(root).physical_cores == 24


@BY_NAME
def test_collect_cpu_takes_base_clock_from_best_available_source(host: Host) -> None:
    """intel_pstate's base_frequency first, then the model name's '@ x GHz', then cpuinfo_max_freq."""
    cpu = collect_cpu(_root(host))
    assert cpu.base_clock_hz == pytest.approx(host.base_clock_hz)
    assert cpu.clock_source is host.clock_source
    if host.max_clock_hz is None:
        assert cpu.max_clock_hz is None
    else:
        assert cpu.max_clock_hz == pytest.approx(host.max_clock_hz)


def test_collect_cpu_prefers_model_name_clock_over_cpu_mhz_without_cpufreq() -> None:
    """Without cpufreq the Ivy Bridge's clock is the brand string's 2.20 GHz, not cpu MHz's 2199.975."""
    root = _root(IVY_BRIDGE)
    assert not (root / "sys/devices/system/cpu/cpu0/cpufreq").exists()
    assert "cpu MHz\t\t: 2199.975" in (root / "proc/cpuinfo").read_text()
    cpu = collect_cpu(root)
    assert cpu.base_clock_hz == 2.2e9
    assert cpu.clock_source is ClockSource.MODEL_NAME


@BY_NAME
def test_collect_cpu_keeps_exactly_the_throughput_flags(host: Host) -> None:
    """Only the ISA flags that decide FLOPs per cycle are kept, and all of those the CPU has."""
    cpu = collect_cpu(_root(host))
    assert set(cpu.flags) == host.flags
    assert cpu.flags == sorted(cpu.flags)


def test_collect_cpu_ivy_bridge_has_avx_without_fma_or_avx2() -> None:
    """Ivy Bridge-EP: AVX present, FMA and AVX2 absent (the row that gives 8 FP64 FLOPs/cycle)."""
    flags = set(collect_cpu(_root(IVY_BRIDGE)).flags)
    assert "avx" in flags
    assert not flags & {"fma", "avx2", "avx512f"}


def test_collect_cpu_ice_lake_has_no_amx_or_bf16() -> None:
    """Ice Lake-SP has AVX-512 VNNI but neither AMX nor AVX-512 BF16 (those came with later generations)."""
    flags = set(collect_cpu(_root(XEON_8380)).flags)
    assert {"avx512f", "avx512_vnni"} <= flags
    assert not flags & {"amx_tile", "amx_bf16", "amx_int8", "avx512_bf16", "avx512_fp16"}


@BY_NAME
def test_collect_cpu_reads_numa_nodes_with_cpus_and_memory(host: Host) -> None:
    """Each NUMA node's CPU list and MemTotal (kB -> bytes) from /sys/devices/system/node/nodeN."""
    nodes = collect_cpu(_root(host)).numa_nodes
    assert [n.node for n in nodes] == list(range(len(host.numa_cpus)))
    assert tuple(frozenset(n.cpus) for n in nodes) == host.numa_cpus
    assert tuple(n.memory_total_bytes for n in nodes) == tuple(kib * 1024 for kib in host.numa_mem_total_kib)
    for node in nodes:
        assert node.memory_available_bytes is not None
        assert 0 < node.memory_available_bytes <= node.memory_total_bytes


def test_collect_cpu_numa_available_is_free_plus_inactive_file_plus_reclaimable_slab() -> None:
    """Node 0 of the 8380: MemFree + Inactive(file) + SReclaimable of the node's meminfo, in bytes."""
    node0 = collect_cpu(_root(XEON_8380)).numa_nodes[0]
    # Node 0 MemFree 241837716 kB, Inactive(file) 9123456 kB, SReclaimable 812344 kB (generate.py).
    assert node0.memory_available_bytes == (241837716 + 9123456 + 812344) * 1024


@BY_NAME
def test_collect_memory_reads_memtotal_and_memavailable(host: Host) -> None:
    """MemTotal in bytes, a little under the installed DIMMs; nodes add up to it; available is below it."""
    memory = collect_memory(_root(host))
    assert memory.total_bytes == host.mem_total_kib * 1024
    assert 0.95 * host.installed_gib * GIB < memory.total_bytes < host.installed_gib * GIB
    assert sum(host.numa_mem_total_kib) * 1024 == memory.total_bytes
    assert 0 < memory.available_bytes < memory.total_bytes


@BY_NAME
def test_collect_host_reads_identity_os_kernel_and_boot_time(host: Host) -> None:
    """Hostname, machine-id as node id, PRETTY_NAME, kernel release and btime as an aware UTC datetime."""
    info = collect_host(_root(host))
    assert info.hostname == host.hostname
    assert info.node_id == host.machine_id
    assert info.node_id_source == "machine-id"
    assert info.os == host.os
    assert info.kernel == host.kernel
    assert info.boot_time == host.boot_time


def test_collect_host_node_id_override_beats_machine_id() -> None:
    """An operator's node id replaces the machine-id and says so."""
    info = collect_host(_root(EPYC_9654), node_id_override="gz-rack3-u12")
    assert info.node_id == "gz-rack3-u12"
    assert info.node_id_source == "override"


def test_fixture_machine_ids_are_distinct() -> None:
    """The four machines have four different node ids and hostnames (a census would otherwise merge them)."""
    infos = [collect_host(_root(h)) for h in ALL_HOSTS]
    assert len({i.node_id for i in infos}) == len(ALL_HOSTS)
    assert len({i.hostname for i in infos}) == len(ALL_HOSTS)


@BY_NAME
def test_collect_interconnects_finds_infiniband_only_where_present(host: Host) -> None:
    """The 8380's mlx5_0 is HDR InfiniBand at 200 Gb/s; the other machines have no RDMA device."""
    found = collect_interconnects(_root(host))
    assert tuple((i.name, i.kind, i.rate_bits_per_second) for i in found) == host.interconnects


@BY_NAME
def test_collect_inventory_without_nvml_has_no_accelerators(host: Host) -> None:
    """nvml=None: zero GPUs, and the inventory carries the CPU, memory, host and fabric collected above."""
    inventory = _inventory(host)
    assert inventory.accelerators == []
    assert inventory.host.node_id == host.machine_id
    assert inventory.host.driver_version is None
    assert inventory.cpu.physical_cores == host.physical_cores
    assert inventory.memory.total_bytes == host.mem_total_kib * 1024
    assert [i.name for i in inventory.interconnects] == [name for name, _, _ in host.interconnects]


def test_collect_inventory_declared_base_clock_replaces_collected_one() -> None:
    """A cpu_base_clock_hz label wins over the model name's clock and is marked declared."""
    inventory = _inventory(IVY_BRIDGE, Labels(cpu_base_clock_hz=2.0e9))
    assert inventory.cpu.base_clock_hz == 2.0e9
    assert inventory.cpu.clock_source is ClockSource.DECLARED


# --- peaks and tier -----------------------------------------------------------------------------------------


@BY_NAME
def test_assess_node_peak_fp64_and_fp32_match_hand_computed_rpeak(host: Host) -> None:
    """Node FP64 and FP32 peaks equal cores x base clock x FLOPs/cycle worked out by hand (formula)."""
    peaks, _ = ComputeModel().assess(_inventory(host))
    fp64, fp32 = peaks.figures[Precision.FP64], peaks.figures[Precision.FP32]
    assert fp64.flops == pytest.approx(host.fp64_flops, rel=1e-12)
    assert fp32.flops == pytest.approx(host.fp32_flops, rel=1e-12)
    assert fp64.provenance is Provenance.FORMULA
    assert fp64.computed_flops == pytest.approx(host.fp64_flops, rel=1e-12)
    assert [c.component for c in peaks.components] == ["cpu"]


def test_assess_ivy_bridge_matches_methodology_worked_example_per_socket() -> None:
    """Each E5-2692 v2 socket is the methodology's 211.2 GFLOPS example; the node is two of them."""
    peaks, _ = ComputeModel().assess(_inventory(IVY_BRIDGE))
    assert peaks.figures[Precision.FP64].flops == pytest.approx(2 * 211.2e9, rel=1e-12)


def test_assess_declared_base_clock_changes_the_peak() -> None:
    """With a declared 2.0 GHz base clock the Ivy Bridge peak is 24 cores x 2.0 GHz x 8 FLOPs/cycle."""
    peaks, _ = ComputeModel().assess(_inventory(IVY_BRIDGE, Labels(cpu_base_clock_hz=2.0e9)))
    assert peaks.figures[Precision.FP64].flops == pytest.approx(24 * 2.0e9 * 8, rel=1e-12)


@BY_NAME
def test_assess_classifies_tier_by_the_default_rules(host: Host) -> None:
    """8380 + InfiniBand is HPC; the CPU-only servers without fabric are general (too big for edge)."""
    _, decision = ComputeModel().assess(_inventory(host))
    assert decision.tier is host.tier
    assert not decision.overridden
    if host.tier is Tier.HPC:
        assert "mlx5_0" in decision.reason


def test_assess_tier_label_overrides_infiniband_rule() -> None:
    """An operator labelling the 8380 node general gets general, marked as overridden."""
    _, decision = ComputeModel().assess(_inventory(XEON_8380, Labels(tier=Tier.GENERAL)))
    assert decision.tier is Tier.GENERAL
    assert decision.overridden


# --- the machine the tests run on -------------------------------------------------------------------------

LIVE = Path("/")
on_linux = pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="needs a Linux /proc")


@on_linux
def test_collect_cpu_on_this_machine_counts_os_cpu_count_threads() -> None:
    """On the live machine the collector's thread count equals os.cpu_count()."""
    cpu = collect_cpu(LIVE)
    assert cpu.threads == os.cpu_count()
    assert 1 <= cpu.physical_cores <= cpu.threads


@on_linux
def test_collect_memory_on_this_machine_equals_proc_meminfo_memtotal() -> None:
    """On the live machine total memory is /proc/meminfo's MemTotal, read here independently, in bytes."""
    memtotal_kib = None
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memtotal_kib = int(line.split()[1])
    assert memtotal_kib is not None
    assert collect_memory(LIVE).total_bytes == memtotal_kib * 1024
