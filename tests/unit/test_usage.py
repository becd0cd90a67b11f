"""The consumed layer: CPU busy cores from /proc/stat pairs, memory used, RAPL package power and NVML usage.

The fixture readings ``tests/fixtures/usage/xeon-8380-2s/t0`` and ``t1`` are written by
``tests/fixtures/usage/generate.py``, whose docstring works out by hand every figure expected here (49.04 busy
cores, 233,239,977,984 bytes used, 425 W of CPU packages over ten seconds).  NVML is the fake of tests/fakes.py.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from census_agent.collectors.memory import collect_memory
from census_agent.collectors.nvml import NvmlUnavailable, PynvmlApi, pci_key, read_gpu_usage, scan_gpus
from census_agent.collectors.usage import (
    CpuTimes,
    UsageSampler,
    busy_cores,
    package_zones,
    parse_proc_stat,
    rapl_watts,
    read_cpu_times,
    read_rapl,
    sample_usage,
)
from census_agent.models import Accelerator, AcceleratorUsage, PowerReading
from tests.fakes import GIB, FakeGpuUsage, FakeNvml, h100_node, mixed_node

READINGS = Path(__file__).resolve().parents[1] / "fixtures" / "usage" / "xeon-8380-2s"
T0, T1 = READINGS / "t0", READINGS / "t1"
BUSY_CORES = 32 + 16 + 104 * 10 / 1000
MEMORY_USED = (527_773_416 - 300_000_000) * 1024
PACKAGE_WATTS = (2_150 + 2_100) / 10


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 5_000.0

    def __call__(self) -> float:
        return self.now


def _stat(*cpus: list[int]) -> str:
    """A /proc/stat with the aggregate line summing the given per-CPU rows."""
    total = [sum(col) for col in zip(*cpus, strict=True)]
    lines = ["cpu  " + " ".join(map(str, total))]
    lines += [f"cpu{i} " + " ".join(map(str, row)) for i, row in enumerate(cpus)]
    return "\n".join([*lines, "ctxt 1", "btime 1764000000"]) + "\n"


def _copy(reading: Path, root: Path) -> None:
    shutil.copytree(reading, root, dirs_exist_ok=True)


# --- CPU ---------------------------------------------------------------------------------------------------------


def test_busy_cores_between_the_two_fixture_readings() -> None:
    """User, system and softirq time count as busy, idle and iowait do not: 49.04 of 160 logical CPUs."""
    before, after = read_cpu_times(T0), read_cpu_times(T1)
    assert before is not None
    assert after is not None
    assert (before.cpus, after.cpus) == (160, 160)
    assert busy_cores(before, after) == pytest.approx(BUSY_CORES, rel=1e-12)


def test_guest_time_is_not_counted_twice() -> None:
    """guest and guest_nice are already inside user and nice: a CPU running a guest all the time is one busy
    core, not two."""
    idle = [0, 0, 0, 100, 0, 0, 0, 0, 0, 0]
    before = parse_proc_stat(_stat([0] * 10, idle))
    after = parse_proc_stat(_stat([100, 0, 0, 0, 0, 0, 0, 0, 100, 0], [0, 0, 0, 200, 0, 0, 0, 0, 0, 0]))
    assert before is not None
    assert after is not None
    assert busy_cores(before, after) == pytest.approx(1.0)


def test_steal_counts_as_busy_and_iowait_as_idle() -> None:
    """busy = total - idle - iowait: a vCPU whose time was stolen was not idle; one waiting on I/O was."""
    before = parse_proc_stat(_stat([0] * 10, [0] * 10))
    after = parse_proc_stat(_stat([0, 0, 0, 0, 0, 0, 0, 100, 0, 0], [0, 0, 0, 50, 50, 0, 0, 0, 0, 0]))
    assert before is not None
    assert after is not None
    assert busy_cores(before, after) == pytest.approx(1.0)


def test_counter_going_backwards_or_cpus_changing_gives_no_figure() -> None:
    """A counter reset (negative delta), a CPU hot-plugged or no time passing: that cycle has no busy figure."""
    busy = CpuTimes(busy=1_000, idle=9_000, cpus=4)
    assert busy_cores(busy, CpuTimes(busy=500, idle=9_500, cpus=4)) is None
    assert busy_cores(busy, CpuTimes(busy=1_100, idle=8_000, cpus=4)) is None
    assert busy_cores(busy, CpuTimes(busy=1_200, idle=9_300, cpus=5)) is None
    assert busy_cores(busy, busy) is None
    assert busy_cores(busy, CpuTimes(busy=1_200, idle=9_200, cpus=4)) == pytest.approx(2.0)


def test_unparseable_proc_stat_is_none_not_an_error() -> None:
    """No ``cpu`` line, letters in the counters or no per-CPU lines: nothing to compare, no exception."""
    assert parse_proc_stat("") is None
    assert parse_proc_stat("intr 1 2 3\nctxt 4\n") is None
    assert parse_proc_stat("cpu  1 2 x 4\ncpu0 1 2 3 4\n") is None
    assert parse_proc_stat("cpu  1 2 3 4\n") is None


# --- RAPL ----------------------------------------------------------------------------------------------------


def test_package_power_from_the_fixture_unwraps_the_counter_and_leaves_dram_out() -> None:
    """Two packages, one counter wrapping at max_energy_range_uj, DRAM sub-domains beside: 425 W of packages."""
    zones = package_zones(T0)
    assert [z.name for z in zones] == ["intel-rapl:0", "intel-rapl:1"]
    watts = rapl_watts(read_rapl(zones), read_rapl(package_zones(T1)), 10.0)
    assert watts == pytest.approx(PACKAGE_WATTS, rel=1e-12)


def test_platform_domain_psys_is_not_package_power(tmp_path: Path) -> None:
    """A laptop-style ``psys`` zone (the whole platform) is a top-level zone but not a CPU package."""
    for zone, name in (("intel-rapl:0", "package-0"), ("intel-rapl:1", "psys"), ("intel-rapl:0:0", "core")):
        folder = tmp_path / "sys" / "class" / "powercap" / zone
        folder.mkdir(parents=True)
        (folder / "name").write_text(name + "\n")
    assert [z.name for z in package_zones(tmp_path)] == ["intel-rapl:0"]


def test_wrap_without_a_known_range_or_zones_changing_gives_no_power() -> None:
    """A counter that went backwards with no max_energy_range_uj, zones that differ, or no time: no figure."""
    before, after = read_rapl(package_zones(T0)), read_rapl(package_zones(T1))
    blind = type(after)(tuple(type(c)(c.zone, c.energy_uj, None) for c in after.counters))
    assert rapl_watts(before, blind, 10.0) is None
    assert rapl_watts(before, type(after)(after.counters[:1]), 10.0) is None
    assert rapl_watts(before, after, 0.0) is None


def test_no_powercap_at_all_means_no_zones(tmp_path: Path) -> None:
    """A VM or an Arm server without powercap: no zones, nothing read."""
    assert package_zones(tmp_path) == []


# --- the sampler --------------------------------------------------------------------------------------------------


def test_first_sample_has_no_usage_and_the_second_has_all_of_it(tmp_path: Path) -> None:
    """The sampler over t0 then t1 ten seconds later: busy cores, memory used and CPU package power as worked out
    in the fixture's docstring; no accelerator readings without NVML."""
    clock = Clock()
    sampler = UsageSampler(tmp_path, None, monotonic=clock)
    _copy(T0, tmp_path)
    assert sampler.sample(collect_memory(tmp_path)) is None
    _copy(T1, tmp_path)
    clock.now += 10.0
    usage = sampler.sample(collect_memory(tmp_path))
    assert usage is not None
    assert usage.interval_seconds == pytest.approx(10.0)
    assert usage.cpu_busy_cores == pytest.approx(BUSY_CORES, rel=1e-12)
    assert usage.memory_used_bytes == MEMORY_USED
    assert usage.accelerators == []
    assert len(usage.power) == 1
    assert usage.power[0].coverage == "cpu-package"
    assert usage.power[0].source == "rapl"
    assert usage.power[0].watts == pytest.approx(PACKAGE_WATTS, rel=1e-12)


def test_a_reset_costs_one_cycle_and_the_next_one_reports_again(tmp_path: Path) -> None:
    """Counters going back (t1 then t0: a reset) give no usage for that cycle; the cycle after compares with the
    reset reading and reports again."""
    clock = Clock()
    sampler = UsageSampler(tmp_path, None, monotonic=clock)
    _copy(T1, tmp_path)
    sampler.sample(collect_memory(tmp_path))
    _copy(T0, tmp_path)
    clock.now += 10.0
    assert sampler.sample(collect_memory(tmp_path)) is None
    _copy(T1, tmp_path)
    clock.now += 10.0
    usage = sampler.sample(collect_memory(tmp_path))
    assert usage is not None
    assert usage.cpu_busy_cores == pytest.approx(BUSY_CORES, rel=1e-12)


def test_unchanged_counters_or_no_proc_give_no_usage(tmp_path: Path) -> None:
    """A frozen tree (the same /proc/stat twice) has no interval in jiffies; a root without /proc has nothing."""
    clock = Clock()
    frozen = UsageSampler(T0, None, monotonic=clock)
    frozen.sample(collect_memory(T0))
    clock.now += 10.0
    assert frozen.sample(collect_memory(T0)) is None
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "meminfo").write_text((T0 / "proc" / "meminfo").read_text())
    empty = UsageSampler(tmp_path, None, monotonic=clock)
    empty.sample(collect_memory(tmp_path))
    clock.now += 10.0
    assert empty.sample(collect_memory(tmp_path)) is None


def test_unreadable_rapl_counter_means_no_cpu_power_logged_once_at_debug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """energy_uj that cannot be read (a dangling link here; 0400 root on most kernels) leaves CPU package power
    out, says why once at debug however many cycles meet it, and the rest of the usage is still there."""
    clock = Clock()
    sampler = UsageSampler(tmp_path, None, monotonic=clock)
    counter = tmp_path / "sys" / "class" / "powercap" / "intel-rapl:1" / "energy_uj"
    with caplog.at_level(logging.DEBUG, logger="census_agent.collectors.usage"):
        for reading in (T0, T1, T0, T1):
            counter.unlink(missing_ok=True)
            _copy(reading, tmp_path)
            counter.unlink()
            counter.symlink_to(tmp_path / "gone")
            clock.now += 10.0
            usage = sampler.sample(collect_memory(tmp_path))
    assert usage is not None
    assert usage.power == []
    assert usage.cpu_busy_cores == pytest.approx(BUSY_CORES, rel=1e-12)
    logged = [r for r in caplog.records if "RAPL" in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].levelno == logging.DEBUG
    assert "intel-rapl:1" in logged[0].getMessage()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_root_only_rapl_counter_is_unreadable_for_the_agent(tmp_path: Path) -> None:
    """A counter the agent's user may not read, as an unprivileged agent meets the kernel's 0400 root-only
    energy_uj: no CPU package reading, and the problem names the file."""
    _copy(T0, tmp_path)
    zones = package_zones(tmp_path)
    (zones[0] / "energy_uj").chmod(0o000)
    reading = read_rapl(zones)
    assert reading.counters == ()
    assert reading.problem is not None
    assert "intel-rapl:0" in reading.problem


def test_sample_usage_waits_between_two_samples(tmp_path: Path) -> None:
    """`inspect --sample`: the first reading, the wait (during which the machine moves on), the second."""
    _copy(T0, tmp_path)
    waited: list[float] = []

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        _copy(T1, tmp_path)

    usage = sample_usage(tmp_path, None, [], 0.25, sleep=sleep)
    assert waited == [0.25]
    assert usage is not None
    assert usage.cpu_busy_cores == pytest.approx(BUSY_CORES, rel=1e-12)
    assert usage.memory_used_bytes == MEMORY_USED


# --- NVML ---------------------------------------------------------------------------------------------------------


def _loaded(nvml: FakeNvml, busy: dict[int, tuple[int | None, int | None, int | None, int | None]]) -> FakeNvml:
    """`nvml` with usage for GPUs by NVML index: (percent, used bytes, power mW, limit mW)."""
    for index, (percent, used, power, limit) in busy.items():
        nvml.usage[nvml.gpus[index].uuid] = FakeGpuUsage(percent, used, power, limit)
    return nvml


def test_gpu_usage_field_by_field_and_not_supported_fields_are_none() -> None:
    """Utilisation (percent to a share), memory used and power (mW to W) per GPU; a field the device does not
    support is None and the others are still read; a GPU with no usage query at all is all None."""
    nvml = _loaded(mixed_node(), {0: (87, 61 * GIB, 412_345, 400_000), 1: (None, 2 * GIB, None, 400_000)})
    accelerators = scan_gpus(nvml).accelerators
    nvml.init()
    usage = read_gpu_usage(nvml, accelerators)
    assert [u.index for u in usage] == [0, 1, 2, 3]
    assert usage[0] == AcceleratorUsage(
        index=0, utilisation=0.87, memory_used_bytes=61 * GIB, power_watts=412.345, power_limit_watts=400.0
    )
    assert usage[1] == AcceleratorUsage(index=1, memory_used_bytes=2 * GIB, power_limit_watts=400.0)
    assert usage[2] == AcceleratorUsage(index=2)


def test_gpu_usage_is_matched_by_pci_bus_id_whatever_the_inventory_order() -> None:
    """Accelerators found on the PCI bus (sysfs spelling ``0000:28:00.0``, their own numbering) get the usage of
    the NVML device at the same address (NVML spelling ``00000000:28:00.0``); a device not in the inventory is
    skipped."""
    nvml = _loaded(h100_node(), {i: (10 * i, i * GIB, 100_000 + i, 700_000) for i in range(8)})
    from_pci = [
        Accelerator(
            index=position,
            vendor="NVIDIA",
            model="H100",
            pci_bus_id=f"0000:{0x18 + nvml_index * 0x10:02x}:00.0",
            pci_vendor_id="10de",
            source="pci",
        )
        for position, nvml_index in enumerate([7, 6, 5, 4, 3, 2, 1])  # reversed, and NVML's 0 left out
    ]
    usage = read_gpu_usage(nvml, from_pci)
    assert [u.index for u in usage] == list(range(7))
    assert [u.utilisation for u in usage] == pytest.approx([0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    assert [u.memory_used_bytes for u in usage] == [i * GIB for i in (7, 6, 5, 4, 3, 2, 1)]


def test_gpu_usage_without_bus_ids_falls_back_to_the_nvml_index() -> None:
    """An NVML-found accelerator without a bus id is the NVML device of its own index; a declared one is never
    matched to an NVML device."""
    nvml = _loaded(h100_node(), {0: (50, GIB, 300_000, 700_000), 1: (60, GIB, 310_000, 700_000)})
    accelerators = [
        Accelerator(index=1, vendor="NVIDIA", model="H100", source="nvml"),
        Accelerator(index=0, vendor="NVIDIA", model="H100", source="declared"),
    ]
    usage = read_gpu_usage(nvml, accelerators)
    assert [(u.index, u.utilisation) for u in usage] == [(1, 0.6)]


def test_pci_addresses_compare_in_one_spelling() -> None:
    """NVML's 8-digit upper-case domain and sysfs's 4-digit lower-case one are the same address."""
    assert pci_key("00000000:4E:00.0") == pci_key("0000:4e:00.0") == "0000:4e:00.0"
    assert pci_key("4e:00.0") == "0000:4e:00.0"
    assert pci_key("not a bus id") is None
    assert pci_key("0000:zz:00.0") is None


def test_sampler_sums_gpu_power_and_keeps_nvml_open_between_cycles(tmp_path: Path) -> None:
    """With every GPU reporting power the sampler adds an "accelerators" reading (their sum); NVML is initialised
    once for all cycles and shut down by `reset_accelerators`."""
    nvml = _loaded(h100_node(), {i: (90, 70 * GIB, 650_000 + i * 1_000, 700_000) for i in range(8)})
    accelerators = scan_gpus(nvml).accelerators
    nvml.calls.clear()
    clock = Clock()
    sampler = UsageSampler(tmp_path, nvml, monotonic=clock)
    for reading in (T0, T1, T0, T1):
        _copy(reading, tmp_path)
        usage = sampler.sample(collect_memory(tmp_path), accelerators)
        clock.now += 10.0
    assert usage is not None
    assert len(usage.accelerators) == 8
    gpu_power = [p for p in usage.power if p.coverage == "accelerators"]
    assert gpu_power == [PowerReading(watts=8 * 650 + 28, coverage="accelerators", source="nvml")]
    assert nvml.calls == ["init"]
    sampler.reset_accelerators()
    assert nvml.calls == ["init", "shutdown"]


def test_no_accelerator_power_sum_when_one_gpu_cannot_say(tmp_path: Path) -> None:
    """A sum that leaves a GPU out would understate the node: with one GPU's power unknown there is no
    "accelerators" reading (the per-GPU figures stay)."""
    nvml = _loaded(mixed_node(), {i: (50, GIB, 200_000, 300_000) for i in range(3)})  # the H100 NVL has none
    accelerators = scan_gpus(nvml).accelerators
    clock = Clock()
    sampler = UsageSampler(tmp_path, nvml, monotonic=clock)
    _copy(T0, tmp_path)
    sampler.sample(collect_memory(tmp_path), accelerators)
    _copy(T1, tmp_path)
    clock.now += 10.0
    usage = sampler.sample(collect_memory(tmp_path), accelerators)
    assert usage is not None
    assert [p.coverage for p in usage.power] == ["cpu-package"]
    assert [u.power_watts for u in usage.accelerators] == [200.0, 200.0, 200.0, None]


def test_nvml_unavailable_or_no_nvidia_gpu_means_no_accelerator_usage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """NVML that cannot start gives no accelerator usage (said once, not each cycle); a node without NVIDIA
    accelerators never touches NVML."""
    gpus = scan_gpus(h100_node()).accelerators
    broken = FakeNvml(h100_node().gpus, unavailable=True)
    unused = h100_node()
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="census_agent.collectors.usage"):
        samplers = [(UsageSampler(tmp_path, broken, monotonic=clock), gpus), (UsageSampler(tmp_path, unused), [])]
        for reading in (T0, T1, T0, T1):
            _copy(reading, tmp_path)
            clock.now += 10.0
            results = [sampler.sample(collect_memory(tmp_path), accs) for sampler, accs in samplers]
    assert results[0] is not None
    assert results[0].accelerators == []
    assert broken.calls == ["init"]
    assert unused.calls == []
    assert len([r for r in caplog.records if "NVML unavailable" in r.getMessage()]) == 1


@pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="this machine has an NVIDIA GPU")
def test_real_pynvml_usage_query_without_nvml_is_our_unavailable_error() -> None:
    """The real adapter's usage queries turn pynvml's errors into ours (here: NVML not loaded), never a raw
    NVMLError that would escape the agent's cycle."""
    api = PynvmlApi(driver_marks=None)
    with pytest.raises(NvmlUnavailable, match="nvmlDeviceGetUtilizationRates"):
        api.utilisation_gpu_percent(object())
