"""FLOPs per cycle per core for each row of the methodology's CPU table, and the lower-precision multipliers.

Each expected rate is derived from the documented rule "FMA pipes x (vector bits / 64) x 2" or taken from the
table in ``shared/reference/compute-methodology.md``; the CpuInfo objects are built by hand as a collector
would fill them for that processor.
"""

from __future__ import annotations

import pytest

from census_agent.compute import cpu_peaks
from census_agent.cpu_peaks import cpu_rate, fp64_flops_per_cycle
from census_agent.models import ClockSource, CpuInfo, Labels, Precision, Provenance


def fma_rate(pipes: int, vector_bits: int) -> int:
    """The methodology's rule: FP64 FLOPs/cycle/core = FMA pipes x (vector width / 64) x 2."""
    return pipes * (vector_bits // 64) * 2


def x86(
    model_name: str,
    flags: set[str],
    *,
    vendor: str = "GenuineIntel",
    family: int = 6,
    model: int = 0,
    cores: int = 8,
    clock_hz: float = 2.0e9,
) -> CpuInfo:
    """An x86 CpuInfo as the collector would fill it (one socket)."""
    return CpuInfo(
        architecture="x86_64",
        vendor=vendor,
        model_name=model_name,
        family=family,
        model=model,
        stepping=0,
        sockets=1,
        physical_cores=cores,
        threads=cores * 2,
        base_clock_hz=clock_hz,
        clock_source=ClockSource.MODEL_NAME,
        flags=sorted(flags),
    )


def arm(vendor: str, part: int, flags: set[str], *, cores: int = 64, clock_hz: float = 2.0e9) -> CpuInfo:
    """An aarch64 CpuInfo: vendor is the implementer's name, arm_part the MIDR part number."""
    return CpuInfo(
        architecture="aarch64",
        vendor=vendor,
        model_name=f"{vendor} part {part:#x}",
        arm_part=part,
        sockets=1,
        physical_cores=cores,
        threads=cores,
        base_clock_hz=clock_hz,
        clock_source=ClockSource.CPUINFO_MAX_FREQ,
        flags=sorted(flags),
    )


SSE2 = {"sse2"}
AVX = SSE2 | {"avx"}
AVX2_FMA = AVX | {"avx2", "fma"}
AVX512 = AVX2_FMA | {"avx512f"}


# --- FP64 per cycle, one methodology row each -------------------------------------------------------------


def test_fp64_sse2_only_is_4() -> None:
    """SSE2 (Westmere): 2 pipes x 128-bit, no FMA -> 4 FP64 FLOPs/cycle (the table's row)."""
    cpu = x86("Intel(R) Xeon(R) CPU X5670 @ 2.93GHz", SSE2, model=44)
    assert fp64_flops_per_cycle(cpu)[0] == 4


def test_fp64_avx_without_fma_is_8() -> None:
    """AVX without FMA (Sandy/Ivy Bridge): a 256-bit add + a 256-bit multiply -> 8 FP64 FLOPs/cycle."""
    cpu = x86("Intel(R) Xeon(R) CPU E5-2692 v2 @ 2.20GHz", AVX, model=62)
    rate, rule = fp64_flops_per_cycle(cpu)
    assert rate == 8
    assert "without FMA" in rule


def test_fp64_avx2_fma_haswell_is_two_256_bit_pipes() -> None:
    """AVX2 + FMA (Haswell): 2 pipes x 256-bit -> 16 FP64 FLOPs/cycle."""
    cpu = x86("Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz", AVX2_FMA, model=63)
    assert fp64_flops_per_cycle(cpu)[0] == fma_rate(2, 256) == 16


@pytest.mark.parametrize(
    ("name", "family", "model"),
    [("AMD EPYC 7742 64-Core Processor", 0x17, 0x31), ("AMD EPYC 7763 64-Core Processor", 0x19, 0x01)],
    ids=["zen2-rome", "zen3-milan"],
)
def test_fp64_amd_zen2_and_zen3_are_two_256_bit_pipes(name: str, family: int, model: int) -> None:
    """AMD Zen 2/3 (AVX2 + FMA, no AVX-512): 2 x 256-bit FMA -> 16 FP64 FLOPs/cycle."""
    cpu = x86(name, AVX2_FMA, vendor="AuthenticAMD", family=family, model=model)
    assert fp64_flops_per_cycle(cpu)[0] == fma_rate(2, 256)


def test_fp64_amd_zen1_is_8_despite_avx2_and_fma() -> None:
    """Zen 1 (family 0x17, model < 0x30) runs AVX2 on 128-bit pipes: 2 x 128-bit FMA -> 8, not 16."""
    cpu = x86("AMD EPYC 7601 32-Core Processor", AVX2_FMA, vendor="AuthenticAMD", family=0x17, model=0x01)
    assert fp64_flops_per_cycle(cpu)[0] == fma_rate(2, 128) == 8


def test_fp64_amd_zen1_boundary_model_0x30_is_zen2() -> None:
    """Family 0x17 model 0x30 is already Zen 2 (the rule is model < 0x30): 16 FP64 FLOPs/cycle."""
    zen_plus = x86("AMD EPYC Zen+", AVX2_FMA, vendor="AuthenticAMD", family=0x17, model=0x2F)
    zen2 = x86("AMD EPYC Zen 2", AVX2_FMA, vendor="AuthenticAMD", family=0x17, model=0x30)
    assert fp64_flops_per_cycle(zen_plus)[0] == 8
    assert fp64_flops_per_cycle(zen2)[0] == 16


def test_fp64_hygon_dhyana_is_zen1_rate() -> None:
    """Hygon (HygonGenuine, family 0x18) is a Zen 1 derivative: 8 FP64 FLOPs/cycle."""
    cpu = x86("Hygon C86 7185 32-core Processor", AVX2_FMA, vendor="HygonGenuine", family=0x18, model=0x01)
    rate, rule = fp64_flops_per_cycle(cpu)
    assert rate == 8
    assert "Hygon" in rule


@pytest.mark.parametrize(
    "name",
    ["Intel(R) Xeon(R) Silver 4114 CPU @ 2.20GHz", "Intel(R) Xeon(R) Gold 5118 CPU @ 2.30GHz"],
    ids=["silver-4114", "gold-5118"],
)
def test_fp64_skylake_xeon_with_one_avx512_pipe_is_16(name: str) -> None:
    """Xeon Silver 4114 and Gold 5118 have one AVX-512 FMA unit: 1 x 512-bit -> 16 FP64 FLOPs/cycle."""
    cpu = x86(name, AVX512, model=0x55)
    assert fp64_flops_per_cycle(cpu)[0] == fma_rate(1, 512) == 16


@pytest.mark.parametrize(
    "name",
    [
        "Intel(R) Xeon(R) Gold 5122 CPU @ 3.60GHz",
        "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz",
        "Intel(R) Xeon(R) Platinum 8180 CPU @ 2.50GHz",
    ],
    ids=["gold-5122", "gold-6148", "platinum-8180"],
)
def test_fp64_skylake_xeon_with_two_avx512_pipes_is_32(name: str) -> None:
    """Gold 5122 (the 5xxx exception), Gold 6xxx and Platinum have two AVX-512 FMA units -> 32."""
    cpu = x86(name, AVX512, model=0x55)
    assert fp64_flops_per_cycle(cpu)[0] == fma_rate(2, 512) == 32


def test_fp64_xeon_phi_has_two_avx512_pipes() -> None:
    """Xeon Phi (Knights Landing): two AVX-512 FMA units per core -> 32."""
    cpu = x86("Intel(R) Xeon Phi(TM) CPU 7250 @ 1.40GHz", AVX512, model=0x57)
    assert fp64_flops_per_cycle(cpu)[0] == 32


def test_fp64_sapphire_rapids_model_without_tier_in_name_is_two_pipes() -> None:
    """Family 6 model 0x8f (Sapphire Rapids) has two pipes on every part, whatever its brand string says."""
    cpu = x86("Intel(R) Xeon(R) CPU Max 9480", AVX512 | {"amx_tile", "amx_bf16", "amx_int8"}, model=0x8F)
    assert fp64_flops_per_cycle(cpu)[0] == 32


def test_fp64_unrecognised_intel_avx512_name_assumes_one_pipe() -> None:
    """An AVX-512 Intel part the rules cannot place (a QEMU CPU model name) gets the conservative one pipe."""
    cpu = x86("Intel Xeon Processor (Skylake, IBRS)", AVX512, model=0x55)
    rate, rule = fp64_flops_per_cycle(cpu)
    assert rate == 16
    assert "one FMA pipe assumed" in rule


def test_fp64_amd_zen4_is_512_bit_ops_on_256_bit_pipes() -> None:
    """Zen 4 (family 0x19 with avx512f) double-pumps 256-bit pipes: 2 x 256-bit -> 16, not 32."""
    cpu = x86("AMD EPYC 9654 96-Core Processor", AVX512, vendor="AuthenticAMD", family=0x19, model=0x11)
    assert fp64_flops_per_cycle(cpu)[0] == fma_rate(2, 256) == 16


def test_fp64_amd_zen5_is_full_512_bit() -> None:
    """Zen 5 (family 0x1a with avx512f) has full 512-bit pipes: 2 x 512-bit -> 32."""
    cpu = x86("AMD EPYC 9755 128-Core Processor", AVX512, vendor="AuthenticAMD", family=0x1A, model=0x02)
    assert fp64_flops_per_cycle(cpu)[0] == fma_rate(2, 512) == 32


@pytest.mark.parametrize(
    ("part", "flags", "expected"),
    [
        (0xD0C, {"asimd", "asimdhp", "asimddp"}, fma_rate(2, 128)),  # Neoverse N1: 2 x 128-bit
        (0xD40, {"asimd", "sve"}, fma_rate(2, 256)),  # Neoverse V1: 2 x 256-bit SVE
        (0xD4F, {"asimd", "sve", "sve2"}, fma_rate(4, 128)),  # Neoverse V2: 4 x 128-bit
    ],
    ids=["neoverse-n1", "neoverse-v1", "neoverse-v2"],
)
def test_fp64_arm_neoverse_cores_by_part_number(part: int, flags: set[str], expected: int) -> None:
    """Arm implementer 0x41 cores are placed by MIDR part: N1 = 8, V1 = 16, V2 = 16 FP64 FLOPs/cycle."""
    assert fp64_flops_per_cycle(arm("ARM", part, flags))[0] == expected


def test_fp64_a64fx_is_two_512_bit_sve_pipes() -> None:
    """Fujitsu A64FX (implementer 0x46 part 0x001): 2 x 512-bit SVE -> 32 FP64 FLOPs/cycle."""
    assert fp64_flops_per_cycle(arm("Fujitsu", 0x001, {"asimd", "sve"}))[0] == fma_rate(2, 512) == 32


def test_cpu_peaks_a64fx_48_cores_at_2_2_ghz_is_3379_2_gflops() -> None:
    """The methodology's worked example: 48 cores x 2.2 GHz x 32 = 3,379.2 GFLOPS FP64 (formula)."""
    cpu = arm("Fujitsu", 0x001, {"asimd", "sve"}, cores=48, clock_hz=2.2e9)
    figure = cpu_peaks(cpu, Labels()).figures[Precision.FP64]
    assert figure.flops == pytest.approx(3379.2e9, rel=1e-12)
    assert figure.provenance is Provenance.FORMULA


def test_fp64_unknown_arm_core_falls_back_on_flags() -> None:
    """An Arm core not in the table: SVE suggests 2 x 256-bit (16), plain Advanced SIMD 2 x 128-bit (8)."""
    assert fp64_flops_per_cycle(arm("ARM", 0xFFF, {"asimd", "sve"}))[0] == 16
    assert fp64_flops_per_cycle(arm("ARM", 0xFFF, {"asimd"}))[0] == 8


def test_cpu_peaks_ivy_bridge_socket_matches_worked_example() -> None:
    """The methodology's other worked example: 12 cores x 2.2 GHz x 8 = 211.2 GFLOPS FP64."""
    cpu = x86("Intel(R) Xeon(R) CPU E5-2692 v2 @ 2.20GHz", AVX, model=62, cores=12, clock_hz=2.2e9)
    assert cpu_peaks(cpu, Labels()).figures[Precision.FP64].flops == pytest.approx(211.2e9, rel=1e-12)


# --- lower precisions (the module docstring's multipliers) -------------------------------------------------


def test_cpu_rate_fp32_is_twice_fp64() -> None:
    """FP32 has twice the lanes of FP64 in the same vector: fp32 = 2 x fp64."""
    rate = cpu_rate(x86("Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz", AVX2_FMA, model=63)).per_cycle
    assert rate[Precision.FP32] == 2 * 16


def test_cpu_rate_without_half_precision_or_dot_product_uses_base_multipliers() -> None:
    """No fp16 arithmetic: fp16 = fp32 (after conversion); no VNNI: int8 = 2 x fp32."""
    rate = cpu_rate(x86("Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz", AVX2_FMA, model=63)).per_cycle
    fp32 = 2 * 16
    assert rate[Precision.FP16] == fp32
    assert rate[Precision.INT8] == 2 * fp32


def test_cpu_rate_avx512_vnni_quadruples_int8_and_bf16_doubles_fp16() -> None:
    """AVX-512 BF16 gives fp16 = 2 x fp32; VNNI gives int8 = 4 x fp32 (Zen 4: fp64 16, fp32 32)."""
    cpu = x86(
        "AMD EPYC 9654 96-Core Processor",
        AVX512 | {"avx512_bf16", "avx512_vnni"},
        vendor="AuthenticAMD",
        family=0x19,
        model=0x11,
    )
    rate = cpu_rate(cpu).per_cycle
    fp32 = 2 * 16
    assert rate[Precision.FP16] == 2 * fp32
    assert rate[Precision.INT8] == 4 * fp32


@pytest.mark.parametrize("flag", ["avx512_fp16", "avx512_bf16", "asimdhp", "svebf16", "bf16"])
def test_cpu_rate_each_half_precision_flag_doubles_fp16(flag: str) -> None:
    """Any of the half-precision arithmetic flags makes fp16 = 2 x fp32."""
    cpu = arm("ARM", 0xD0C, {"asimd", flag}) if flag in {"asimdhp", "svebf16", "bf16"} else x86("X", AVX2_FMA | {flag})
    rate = cpu_rate(cpu).per_cycle
    assert rate[Precision.FP16] == 2 * rate[Precision.FP32]


@pytest.mark.parametrize("flag", ["avx512_vnni", "avx_vnni", "asimddp", "i8mm"])
def test_cpu_rate_each_dot_product_flag_quadruples_int8(flag: str) -> None:
    """Any of the int8 dot-product flags makes int8 = 4 x fp32."""
    cpu = arm("ARM", 0xD0C, {"asimd", flag}) if flag in {"asimddp", "i8mm"} else x86("X", AVX2_FMA | {flag})
    rate = cpu_rate(cpu).per_cycle
    assert rate[Precision.INT8] == 4 * rate[Precision.FP32]


def test_cpu_rate_amx_sets_fixed_fp16_and_int8_per_cycle() -> None:
    """AMX: 1024 BF16 FLOPs and 2048 INT8 ops per cycle per core, whatever the vector rates."""
    cpu = x86(
        "Intel(R) Xeon(R) Platinum 8480+",
        AVX512 | {"avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8"},
        model=0x8F,
    )
    rate = cpu_rate(cpu).per_cycle
    assert rate[Precision.FP64] == 32
    assert rate[Precision.FP16] == 1024
    assert rate[Precision.INT8] == 2048


def test_cpu_rate_neoverse_n1_uses_fp16_and_dot_product_multipliers() -> None:
    """Neoverse N1 (asimdhp, asimddp): fp64 8, fp32 16, fp16 32, int8 64 per cycle."""
    rate = cpu_rate(arm("ARM", 0xD0C, {"asimd", "asimdhp", "asimddp", "fphp"})).per_cycle
    assert rate == {Precision.FP64: 8, Precision.FP32: 16, Precision.FP16: 2 * 16, Precision.INT8: 4 * 16}


# --- a declared rate ---------------------------------------------------------------------------------------


def test_cpu_rate_declared_fp64_per_cycle_overrides_the_rule() -> None:
    """A declared fp64 rate replaces the rule's (Gold 5118's 16 becomes 32) and the rule text says declared."""
    cpu = x86("Intel(R) Xeon(R) Gold 5118 CPU @ 2.30GHz", AVX512, model=0x55)
    rate = cpu_rate(cpu, declared_fp64_per_cycle=32)
    assert rate.per_cycle[Precision.FP64] == 32
    assert rate.per_cycle[Precision.FP32] == 64
    assert "declared" in rate.rule


def test_cpu_peaks_declared_label_overrides_rule_and_marks_provenance_declared() -> None:
    """The cpu_fp64_flops_per_cycle label feeds the peak: 12 cores x 2.3 GHz x 32, provenance declared."""
    cpu = x86("Intel(R) Xeon(R) Gold 5118 CPU @ 2.30GHz", AVX512, model=0x55, cores=12, clock_hz=2.3e9)
    peaks = cpu_peaks(cpu, Labels(cpu_fp64_flops_per_cycle=32))
    assert peaks.figures[Precision.FP64].flops == pytest.approx(12 * 2.3e9 * 32, rel=1e-12)
    assert peaks.figures[Precision.FP64].provenance is Provenance.DECLARED
    undeclared = cpu_peaks(cpu, Labels())
    assert undeclared.figures[Precision.FP64].flops == pytest.approx(12 * 2.3e9 * 16, rel=1e-12)
    assert undeclared.figures[Precision.FP64].provenance is Provenance.FORMULA


def test_cpu_peaks_unknown_base_clock_gives_zero_with_note() -> None:
    """Without a base clock every CPU figure is 0 and the note says the clock must be declared."""
    cpu = x86("Some CPU", AVX2_FMA).model_copy(update={"base_clock_hz": None, "clock_source": ClockSource.UNKNOWN})
    peaks = cpu_peaks(cpu, Labels())
    assert all(f.flops == 0 for f in peaks.figures.values())
    assert "base clock unknown" in peaks.note
