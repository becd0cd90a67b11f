"""What the node consumes, read each cycle: CPU busy cores, memory used, accelerator use, power.

Pure parsers (`parse_proc_stat`, `busy_cores`, `read_rapl`, `rapl_watts`) and one small stateful
`UsageSampler` that keeps the previous reading and turns two readings into a `Usage` for the interval between
them.  Everything is read under the injectable root, like the other collectors:

* CPU: the aggregate ``cpu`` line of ``proc/stat``; busy = total - idle - iowait (steal, irq and softirq count
  as busy; guest time is already inside user and nice and is not added twice).  Busy cores = busy jiffies /
  total jiffies x online CPUs (the ``cpuN`` lines), so no clock tick rate is assumed.
* memory: MemTotal - MemAvailable (`collect_memory`, which falls back to free + cached + buffers on old kernels).
* power: RAPL package domains under ``sys/class/powercap`` (``intel-rapl:N`` named ``package-N``; sub-domains
  such as dram/core and the ``psys`` platform domain are left out), energy counter delta over the interval,
  wrapped at ``max_energy_range_uj``.  Since the 2020 PLATYPUS fix most kernels make ``energy_uj`` readable by
  root only: then there is no CPU power reading (logged once at debug), never an error.
* accelerators: NVML through `census_agent.collectors.nvml.read_gpu_usage`, NVML kept initialised between
  cycles (`GpuUsageSession`).

A cycle whose counters went backwards (a counter reset, a CPU hot-plugged or taken offline) or whose interval is
not positive gives no `Usage` for that cycle; the next one does.  This module must not scan the inventory (the
caller passes the accelerators it already knows) and must never raise for a machine it cannot read.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from census_agent.collectors.files import read_int, read_text
from census_agent.collectors.memory import collect_memory
from census_agent.collectors.nvml import NvmlApi, NvmlNotSupported, NvmlUnavailable, read_gpu_usage
from census_agent.models import MAX_CORES, MAX_WATTS, Accelerator, AcceleratorUsage, MemoryInfo, PowerReading, Usage

log = logging.getLogger(__name__)

MAX_INTERVAL_SECONDS = 86_400.0  # `Usage.interval_seconds`' bound: a longer gap is no cycle at all
_RAPL_ZONE = re.compile(r"^intel-rapl:(\d+)$")  # top-level zones only; intel-rapl:N:M are sub-domains


# --- CPU: /proc/stat ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """The aggregate CPU counters of one /proc/stat reading, in jiffies, and the CPUs listed."""

    busy: int
    idle: int  # idle + iowait
    cpus: int

    @property
    def total(self) -> int:
        """busy + idle."""
        return self.busy + self.idle


def parse_proc_stat(text: str) -> CpuTimes | None:
    """The ``cpu`` line's busy and idle jiffies and the number of ``cpuN`` lines; None when there is no such line.

    Fields (proc(5)): user nice system idle iowait irq softirq steal guest guest_nice.  guest and guest_nice are
    already counted in user and nice, so only the first eight are summed; kernels before 2.6.11 give fewer.
    """
    aggregate: list[int] | None = None
    cpus = 0
    for line in text.splitlines():
        if not line.startswith("cpu"):
            continue
        name, _, rest = line.partition(" ")
        if name == "cpu":
            try:
                aggregate = [int(v) for v in rest.split()[:8]]
            except ValueError:
                return None
        elif name[3:].isdigit():
            cpus += 1
    if aggregate is None or len(aggregate) < 4 or cpus == 0:
        return None
    idle = aggregate[3] + (aggregate[4] if len(aggregate) > 4 else 0)
    return CpuTimes(busy=sum(aggregate) - idle, idle=idle, cpus=cpus)


def busy_cores(before: CpuTimes, after: CpuTimes) -> float | None:
    """Logical CPUs busy on average between two readings; None when they cannot be compared (a counter went
    backwards, the CPUs listed changed, or no time passed)."""
    if before.cpus != after.cpus:
        return None
    busy, idle = after.busy - before.busy, after.idle - before.idle
    if busy < 0 or idle < 0 or busy + idle == 0:
        return None
    return min(busy / (busy + idle) * after.cpus, float(MAX_CORES))


def read_cpu_times(root: Path) -> CpuTimes | None:
    """`parse_proc_stat` of ``proc/stat`` under `root`; None when it cannot be read."""
    text = read_text(root / "proc" / "stat")
    return parse_proc_stat(text) if text is not None else None


# --- power: RAPL --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RaplCounter:
    """One package domain's energy counter (microjoules) and where it wraps."""

    zone: str
    energy_uj: int
    max_energy_range_uj: int | None


@dataclass(frozen=True, slots=True)
class RaplReading:
    """Every package domain's counter, or why there is none."""

    counters: tuple[RaplCounter, ...]
    problem: str | None = None  # set when there are package domains but a counter cannot be read


def package_zones(root: Path) -> list[Path]:
    """The RAPL package domains under `root`: top-level ``intel-rapl:N`` zones whose name is ``package-N``."""
    base = root / "sys" / "class" / "powercap"
    try:
        entries = sorted(base.iterdir(), key=lambda p: p.name)
    except OSError:
        return []
    zones = []
    for entry in entries:
        if _RAPL_ZONE.match(entry.name) and (read_text(entry / "name") or "").strip().startswith("package"):
            zones.append(entry)
    return zones


def read_rapl(zones: Sequence[Path]) -> RaplReading:
    """The energy counters of `zones`; a `problem` (and no counters) when any of them cannot be read, so a sum is
    never a silent part of the packages."""
    counters = []
    for zone in zones:
        try:
            energy = int((zone / "energy_uj").read_text(encoding="ascii").strip())
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return RaplReading((), f"{zone / 'energy_uj'}: {reason}")
        counters.append(RaplCounter(zone.name, energy, read_int(zone / "max_energy_range_uj")))
    return RaplReading(tuple(counters))


def rapl_watts(before: RaplReading, after: RaplReading, seconds: float) -> float | None:
    """Mean power of every package over `seconds` from two readings; a counter that wrapped is unwrapped with its
    ``max_energy_range_uj``.  None when the readings do not cover the same zones, one is missing, a counter went
    backwards without a known range, or `seconds` is not positive."""
    if seconds <= 0 or not before.counters or [c.zone for c in before.counters] != [c.zone for c in after.counters]:
        return None
    joules = 0.0
    for old, new in zip(before.counters, after.counters, strict=True):
        delta = new.energy_uj - old.energy_uj
        if delta < 0:
            span = new.max_energy_range_uj
            if span is None or span <= 0 or old.energy_uj > span:
                return None
            delta += span
        joules += delta / 1e6
    return joules / seconds


# --- accelerators: NVML kept open between cycles -------------------------------------------------------------------


def _nvidia(accelerators: Sequence[Accelerator]) -> bool:
    return any(
        a.source == "nvml" or a.pci_vendor_id == "10de" or a.vendor.strip().lower() == "nvidia" for a in accelerators
    )


class GpuUsageSession:
    """NVML initialised once and read every cycle; `close` shuts it down.

    NVML counts its initialisations, so the inventory's own scans (init, scan, shutdown) do not disturb it.  Not
    used at all on a node whose inventory has no NVIDIA accelerator.  A failed init is not retried until
    `close` (the agent closes it when it re-collects the inventory)."""

    def __init__(self, api: NvmlApi | None) -> None:
        self._api = api
        self._open = False
        self._failed = False

    def read(self, accelerators: Sequence[Accelerator]) -> list[AcceleratorUsage]:
        """Each NVIDIA accelerator's usage now; [] without NVML or without NVIDIA accelerators."""
        api = self._api
        if api is None or self._failed or not _nvidia(accelerators):
            return []
        if not self._open:
            try:
                api.init()
            except NvmlUnavailable as exc:
                self._failed = True
                log.info("accelerator usage not read: NVML unavailable (%s)", exc)
                return []
            self._open = True
        try:
            return read_gpu_usage(api, accelerators)
        except (NvmlUnavailable, NvmlNotSupported) as exc:
            log.warning("accelerator usage not read this cycle: %s", exc)
            self.close()
            return []

    def close(self) -> None:
        """Shut NVML down if this session opened it, and allow a fresh init."""
        if self._open and self._api is not None:
            with contextlib.suppress(NvmlUnavailable, NvmlNotSupported):
                self._api.shutdown()
        self._open = False
        self._failed = False


# --- the sampler ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Reading:
    at: float
    cpu: CpuTimes | None
    rapl: RaplReading | None


class UsageSampler:
    """Two consecutive readings give the `Usage` of the interval between them; the first gives none.

    `monotonic` is the clock the interval is measured on (``time.monotonic``; tests pass their own).  RAPL zones
    are found once, at the first sample; an unreadable counter is logged once at debug and then left alone."""

    def __init__(
        self, root: Path, nvml: NvmlApi | None = None, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.root = root
        self._gpus = GpuUsageSession(nvml)
        self._monotonic = monotonic
        self._previous: _Reading | None = None
        self._zones: list[Path] | None = None
        self._rapl_problem_logged = False

    def _read_rapl(self) -> RaplReading | None:
        if self._zones is None:
            self._zones = package_zones(self.root)
        if not self._zones:
            return None
        reading = read_rapl(self._zones)
        if reading.problem is not None and not self._rapl_problem_logged:
            self._rapl_problem_logged = True
            log.debug("no CPU package power: RAPL unreadable (%s); root-only on most kernels", reading.problem)
        return reading

    def sample(self, memory: MemoryInfo, accelerators: Sequence[Accelerator] = ()) -> Usage | None:
        """Read the counters now; the usage since the previous call, or None on the first call and after a reset.

        `memory` is this cycle's memory reading (the agent already takes one); `accelerators` are the inventory's,
        which NVML readings are matched to."""
        now = _Reading(self._monotonic(), read_cpu_times(self.root), self._read_rapl())
        before, self._previous = self._previous, now
        if before is None or before.cpu is None or now.cpu is None:
            return None
        seconds = now.at - before.at
        if not 0 < seconds <= MAX_INTERVAL_SECONDS:
            return None
        cores = busy_cores(before.cpu, now.cpu)
        if cores is None:
            log.debug("CPU counters not comparable this cycle (reset or CPUs changed): no usage")
            return None
        power = []
        if before.rapl is not None and now.rapl is not None:
            watts = rapl_watts(before.rapl, now.rapl, seconds)
            if watts is not None and watts <= MAX_WATTS:
                power.append(PowerReading(watts=watts, coverage="cpu-package", source="rapl"))
        gpus = self._gpus.read(accelerators)
        gpu_watts = [g.power_watts for g in gpus]
        if gpus and all(w is not None for w in gpu_watts):
            power.append(
                PowerReading(watts=sum(w for w in gpu_watts if w is not None), coverage="accelerators", source="nvml")
            )
        return Usage(
            interval_seconds=seconds,
            cpu_busy_cores=cores,
            memory_used_bytes=max(memory.total_bytes - memory.available_bytes, 0),
            accelerators=gpus,
            power=power,
        )

    def reset_accelerators(self) -> None:
        """Shut NVML down (after a fresh inventory, or at the end); the next sample opens it again if needed."""
        self._gpus.close()


def sample_usage(
    root: Path,
    nvml: NvmlApi | None,
    accelerators: Sequence[Accelerator],
    seconds: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Usage | None:
    """Two samples `seconds` apart (``census-agent inspect --sample``): the usage in between, or None when the
    counters under `root` did not move (a fixture tree) or cannot be read."""
    sampler = UsageSampler(root, nvml)
    try:
        sampler.sample(collect_memory(root), accelerators)
        sleep(seconds)
        return sampler.sample(collect_memory(root), accelerators)
    finally:
        sampler.reset_accelerators()
