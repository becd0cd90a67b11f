"""CPU inventory from /proc/cpuinfo and /sys/devices/system/{cpu,node} under an injected root.

Reads: vendor, model name, family/model/stepping (x86) or implementer/part (Arm), sockets, physical cores and
threads (sysfs topology, falling back to cpuinfo's physical/core ids), base and max clock (best source
first, see `ClockSource`), the ISA flags that matter for throughput, and NUMA nodes with their memory.
"""

from __future__ import annotations

import re
from pathlib import Path

from census_agent.collectors.files import parse_cpu_list, parse_kv, read_int, read_text
from census_agent.cpu_peaks import ARM_IMPLEMENTERS, THROUGHPUT_FLAGS, arm_core_name
from census_agent.models import ClockSource, CpuInfo, NumaNode

_CPU_DIR = re.compile(r"^cpu(\d+)$")
_NODE_DIR = re.compile(r"^node(\d+)$")
_GHZ_IN_NAME = re.compile(r"@\s*([0-9.]+)\s*GHz", re.IGNORECASE)


class CpuInfoError(RuntimeError):
    """/proc/cpuinfo is missing or unreadable: there is no CPU inventory without it."""


def parse_cpuinfo(text: str) -> list[dict[str, str]]:
    """One dict per ``processor`` stanza (keys as the kernel writes them)."""
    stanzas: list[dict[str, str]] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        fields = parse_kv(block)
        if "processor" in fields:
            stanzas.append(fields)
    return stanzas


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value, 0)
    except ValueError:
        return None


def _topology(sys_cpu: Path, online: list[int], stanzas: list[dict[str, str]]) -> tuple[int, int]:
    """(sockets, physical cores) from sysfs topology, else cpuinfo ids, else one socket of threads."""
    pairs: set[tuple[int, int]] = set()
    for cpu in online:
        topo = sys_cpu / f"cpu{cpu}" / "topology"
        package, core = read_int(topo / "physical_package_id"), read_int(topo / "core_id")
        if package is None or core is None:
            pairs.clear()
            break
        pairs.add((max(package, 0), core))
    if not pairs:
        for stanza in stanzas:
            package, core = _int(stanza.get("physical id")), _int(stanza.get("core id"))
            if package is None or core is None:
                pairs.clear()
                break
            pairs.add((package, core))
    if not pairs:
        return 1, max(len(online), 1)
    return len({p for p, _ in pairs}), len(pairs)


def _clocks(
    sys_cpu: Path, first_cpu: int, model_name: str, stanza: dict[str, str]
) -> tuple[float | None, float | None, ClockSource]:
    freq = sys_cpu / f"cpu{first_cpu}" / "cpufreq"
    max_khz = read_int(freq / "cpuinfo_max_freq")
    max_hz = max_khz * 1e3 if max_khz else None
    base_khz = read_int(freq / "base_frequency")
    if base_khz:
        return base_khz * 1e3, max_hz, ClockSource.SYSFS_BASE_FREQUENCY
    match = _GHZ_IN_NAME.search(model_name)
    if match:
        return float(match.group(1)) * 1e9, max_hz, ClockSource.MODEL_NAME
    # ACPI CPPC's nominal frequency (MHz) is the base clock where cpufreq's maximum is the boost clock
    # (amd-pstate on AMD, cppc_cpufreq on Arm servers).
    nominal_mhz = read_int(sys_cpu / f"cpu{first_cpu}" / "acpi_cppc" / "nominal_freq")
    if nominal_mhz:
        return nominal_mhz * 1e6, max_hz, ClockSource.ACPI_CPPC_NOMINAL
    if max_hz:
        return max_hz, max_hz, ClockSource.CPUINFO_MAX_FREQ
    mhz = stanza.get("cpu MHz")
    if mhz:
        try:
            return float(mhz) * 1e6, None, ClockSource.CPU_MHZ
        except ValueError:
            pass
    return None, None, ClockSource.UNKNOWN


def _numa_nodes(root: Path) -> list[NumaNode]:
    base = root / "sys" / "devices" / "system" / "node"
    nodes: list[NumaNode] = []
    try:
        entries = sorted(base.iterdir(), key=lambda p: p.name)
    except OSError:
        return nodes
    for entry in entries:
        match = _NODE_DIR.match(entry.name)
        if not match:
            continue
        meminfo = read_text(entry / "meminfo") or ""
        fields = {k.split()[-1]: v for k, v in parse_kv(meminfo).items() if k.split()}
        total = _kib(fields.get("MemTotal"))
        if total is None:
            continue
        free, inactive_file, reclaimable = (_kib(fields.get(k)) for k in ("MemFree", "Inactive(file)", "SReclaimable"))
        available = None if free is None else free + (inactive_file or 0) + (reclaimable or 0)
        nodes.append(
            NumaNode(
                node=int(match.group(1)),
                cpus=parse_cpu_list(read_text(entry / "cpulist") or ""),
                memory_total_bytes=total,
                memory_available_bytes=available,
            )
        )
    nodes.sort(key=lambda n: n.node)
    return nodes


def _kib(value: str | None) -> int | None:
    if not value:
        return None
    number = value.split()[0]
    return int(number) * 1024 if number.isdigit() else None


def _online_cpus(sys_cpu: Path, stanzas: list[dict[str, str]]) -> list[int]:
    online = read_text(sys_cpu / "online")
    if online and online.strip():
        return parse_cpu_list(online)
    try:
        found = sorted(int(m.group(1)) for p in sys_cpu.iterdir() if (m := _CPU_DIR.match(p.name)))
    except OSError:
        found = []
    return found or [int(s["processor"]) for s in stanzas if s["processor"].isdigit()]


def _architecture(first: dict[str, str], flags: set[str]) -> str:
    if "CPU implementer" in first:
        return "aarch64"
    if "vendor_id" in first:
        return "x86_64" if "lm" in flags else "i686"
    return first.get("cpu", first.get("isa", "unknown")).split()[0] if first else "unknown"


def collect_cpu(root: Path) -> CpuInfo:
    """The CPU inventory of the machine whose /proc and /sys lie under `root`."""
    text = read_text(root / "proc" / "cpuinfo")
    stanzas = parse_cpuinfo(text or "")
    if not stanzas:
        raise CpuInfoError(f"no processors found in {root / 'proc' / 'cpuinfo'}")
    first = stanzas[0]
    all_flags = set((first.get("flags") or first.get("Features") or "").split())
    architecture = _architecture(first, all_flags)
    sys_cpu = root / "sys" / "devices" / "system" / "cpu"
    online = _online_cpus(sys_cpu, stanzas)
    sockets, cores = _topology(sys_cpu, online, stanzas)

    arm_part = None
    if architecture == "aarch64":
        implementer = _int(first.get("CPU implementer")) or 0
        arm_part = _int(first.get("CPU part"))
        vendor = ARM_IMPLEMENTERS.get(implementer, f"arm-implementer-{implementer:#x}")
        model_name = first.get("model name") or (
            arm_core_name(implementer, arm_part or 0) or f"Arm implementer {implementer:#x} part {arm_part or 0:#x}"
        )
        family = model = stepping = None
    else:
        vendor = first.get("vendor_id", "unknown")
        model_name = first.get("model name", "unknown")
        family, model, stepping = (_int(first.get(k)) for k in ("cpu family", "model", "stepping"))

    base_hz, max_hz, clock_source = _clocks(sys_cpu, online[0] if online else 0, model_name, first)
    return CpuInfo(
        architecture=architecture,
        vendor=vendor,
        model_name=" ".join(model_name.split()),
        family=family,
        model=model,
        stepping=stepping,
        arm_part=arm_part,
        sockets=sockets,
        physical_cores=cores,
        threads=max(len(online), 1),
        base_clock_hz=base_hz,
        max_clock_hz=max_hz,
        clock_source=clock_source,
        flags=sorted(all_flags & THROUGHPUT_FLAGS),
        numa_nodes=_numa_nodes(root),
    )
