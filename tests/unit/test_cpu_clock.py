"""Where the CPU base clock comes from when cpufreq's maximum is the boost clock (amd-pstate, cppc_cpufreq)."""

from __future__ import annotations

import shutil
from pathlib import Path

from census_agent.collectors.cpu import collect_cpu
from census_agent.models import ClockSource

EPYC = Path(__file__).parent.parent / "fixtures" / "hosts" / "epyc-9654-zen4"


def test_amd_pstate_boost_maximum_is_not_taken_for_the_base_clock(tmp_path: Path) -> None:
    """Under amd-pstate cpuinfo_max_freq is the 3.7 GHz boost; ACPI CPPC's nominal_freq (2400 MHz) is the base."""
    root = tmp_path / "epyc"
    shutil.copytree(EPYC, root, symlinks=True)
    cpu0 = root / "sys" / "devices" / "system" / "cpu" / "cpu0"
    (cpu0 / "cpufreq" / "cpuinfo_max_freq").write_text("3700000\n")
    (cpu0 / "acpi_cppc").mkdir()
    (cpu0 / "acpi_cppc" / "nominal_freq").write_text("2400\n")
    cpu = collect_cpu(root)
    assert cpu.base_clock_hz == 2.4e9
    assert cpu.clock_source is ClockSource.ACPI_CPPC_NOMINAL
    assert cpu.max_clock_hz == 3.7e9


def test_without_cppc_the_acpi_cpufreq_maximum_is_the_nominal_clock() -> None:
    """acpi-cpufreq lists no boost states: its cpuinfo_max_freq (2.4 GHz on the EPYC 9654) is the base."""
    cpu = collect_cpu(EPYC)
    assert cpu.base_clock_hz == 2.4e9
    assert cpu.clock_source is ClockSource.CPUINFO_MAX_FREQ
